"""What the registry holds: release tags, their digests, and the moving `production` tag.

Through skopeo rather than a registry client of our own: it speaks every registry's API
(token challenges, all pages of a tag list by their Link headers, OCI and Docker manifests,
indexes), moves a tag to a digest without pulling, and GitHub's runners ship it. The Docker
engine API cannot list tags or retag without a pull. Credentials are Docker's: the Docker SDK
resolves them as `docker login` stored them (config.json, `credHelpers`, `credsStore`) and
hands them to skopeo in a private temporary file; REGISTRY_USERNAME / REGISTRY_PASSWORD, when
both are set, win. Loopback registries are spoken to over plain HTTP, as Docker does.
"""
from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import re
import subprocess
import tempfile
import urllib.parse
import weakref

import semver

PRODUCTION_TAG = "production"
# What registries answer for a tag or repository that does not exist (OCI distribution's
# MANIFEST_UNKNOWN and NAME_UNKNOWN); skopeo reports a tag list of a missing repository as 404.
ABSENT = re.compile(r"manifest unknown|name unknown|fetching tags list: .*404")


class RegistryError(RuntimeError):
    pass


def release_versions(tags) -> list[str]:
    """The tags that are semantic versions (releases), oldest first."""
    versions = [tag for tag in tags if semver.Version.is_valid(tag)]
    return sorted(versions, key=semver.Version.parse)


def is_stable(version: str) -> bool:
    return not semver.Version.parse(version).prerelease


def is_loopback(host: str) -> bool:
    name = urllib.parse.urlsplit("//" + host).hostname or ""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def docker_credentials(host: str) -> tuple[str, str] | None:
    """(user, password) for a registry as `docker login` stored them, or None."""
    user, password = os.environ.get("REGISTRY_USERNAME"), os.environ.get("REGISTRY_PASSWORD")
    if user and password:
        return user, password
    import docker.auth
    import docker.errors
    try:
        found = docker.auth.resolve_authconfig(docker.auth.load_config(), host) or {}
    except docker.errors.DockerException as error:  # a credential helper that fails
        raise RegistryError(f"the Docker credentials for {host}: {error}") from error
    # config.json's own logins come with lower-case keys, a credential helper's capitalised
    user = found.get("username") or found.get("Username")
    password = found.get("password") or found.get("Password")
    return (user, password) if user and password else None


class Registry:
    def __init__(self, host: str, timeout: float = 120.0):
        self.host = host
        self.timeout = timeout
        self.tls = [] if not is_loopback(host) else ["--tls-verify=false"]
        self._authfile: list[str] | None = None

    def _auth(self) -> list[str]:
        """skopeo's --authfile with this registry's Docker credentials (resolved once)."""
        if self._authfile is None:
            self._authfile = []
            credentials = docker_credentials(self.host)
            if credentials:
                token = base64.b64encode(":".join(credentials).encode()).decode()
                handle, path = tempfile.mkstemp(prefix="registry-auth-", suffix=".json")
                with os.fdopen(handle, "w") as file:
                    json.dump({"auths": {self.host: {"auth": token}}}, file)
                weakref.finalize(self, os.remove, path)
                self._authfile = ["--authfile", path]
        return self._authfile

    def _skopeo(self, command: str, *args: str, doing: str,
                absent_ok: bool = False) -> bytes | None:
        """Run `skopeo command`; its output, or None when absent_ok and the thing is absent."""
        options = self._auth() + self.tls
        if command == "copy":
            options = [option.replace("--", "--src-", 1) for option in options] + \
                      [option.replace("--", "--dest-", 1) for option in options]
        try:
            result = subprocess.run(["skopeo", command, *options, *args], capture_output=True,
                                    timeout=self.timeout)
        except FileNotFoundError:
            raise RegistryError("skopeo is not installed: `make provision` installs it "
                                "(apt-get install skopeo, brew install skopeo)") from None
        except subprocess.TimeoutExpired:
            raise RegistryError(f"registry {self.host}: cannot {doing}: no answer within "
                                f"{self.timeout:g} s") from None
        if result.returncode == 0:
            return result.stdout
        message = re.sub(r'^.*msg="(.*)"\s*$', r"\1", result.stderr.decode(errors="replace"),
                         flags=re.DOTALL).replace('\\"', '"')
        if absent_ok and ABSENT.search(message):
            return None
        raise RegistryError(f"registry {self.host}: cannot {doing}: {message}")

    def ref(self, repository: str, reference: str = "") -> str:
        separator = "@" if reference.startswith("sha256:") else ":"
        return f"docker://{self.host}/{repository}" + (separator + reference if reference else "")

    def tags(self, repository: str) -> list[str]:
        """All tags of a repository, every page ([] when it does not exist yet)."""
        output = self._skopeo("list-tags", self.ref(repository), absent_ok=True,
                              doing=f"list the tags of {repository}")
        return json.loads(output).get("Tags") or [] if output else []

    def manifest(self, repository: str, reference: str) -> tuple[str, bytes] | None:
        """(digest, raw manifest) of a tag or digest, or None when the registry has no such
        tag. The digest is the manifest's own sha256, so no response header is relied on."""
        output = self._skopeo("inspect", "--raw", self.ref(repository, reference),
                              absent_ok=True, doing=f"read {repository}:{reference}")
        if output is None:
            return None
        return "sha256:" + hashlib.sha256(output).hexdigest(), output

    def digest(self, repository: str, reference: str) -> str | None:
        found = self.manifest(repository, reference)
        return found[0] if found else None

    def config_digest(self, repository: str, reference: str) -> str | None:
        """The image ID (config digest) a tag points to: what the engine calls the image's id."""
        found = self.manifest(repository, reference)
        if not found:
            return None
        return json.loads(found[1]).get("config", {}).get("digest")

    def tag(self, repository: str, digest: str, tag: str) -> None:
        """Point `tag` at the manifest `digest`: the same bytes, no pull, no layer copied."""
        self._skopeo("copy", "--quiet", "--all", "--preserve-digests",
                     self.ref(repository, digest), self.ref(repository, tag),
                     doing=f"tag {repository}@{digest} as {tag}")

    def delete(self, repository: str, digest: str) -> None:
        """Delete a manifest (and so every tag on it); the registry must allow deletes."""
        self._skopeo("delete", self.ref(repository, digest), absent_ok=True,
                     doing=f"delete {repository}@{digest}")
