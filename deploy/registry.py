"""What the registry holds: release tags, their digests, and the moving `production` tag.

Talks the registry HTTP API (distribution v2 / OCI) directly, because the Docker engine API
can pull and push but cannot list tags or retag without pulling. Loopback registries are
spoken to over plain HTTP (as Docker does); others over HTTPS, with the standard token
challenge and the optional REGISTRY_USERNAME / REGISTRY_PASSWORD.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
import urllib.parse

import requests
import semver

PRODUCTION_TAG = "production"
MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])


class RegistryError(RuntimeError):
    pass


def release_versions(tags) -> list[str]:
    """The tags that are semantic versions (releases), oldest first."""
    versions = [tag for tag in tags if semver.Version.is_valid(tag)]
    return sorted(versions, key=semver.Version.parse)


def is_loopback(host: str) -> bool:
    name = urllib.parse.urlsplit("//" + host).hostname or ""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Registry:
    def __init__(self, host: str, timeout: float = 30.0):
        self.host = host
        scheme = "http" if is_loopback(host) else "https"
        self.base = f"{scheme}://{host}/v2"
        self.session = requests.Session()
        self.timeout = timeout
        user, password = os.environ.get("REGISTRY_USERNAME"), os.environ.get("REGISTRY_PASSWORD")
        self.credentials = (user, password) if user and password else None

    def _request(self, method: str, path: str, **kwargs) -> requests.Response:
        url = f"{self.base}/{path}"
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
            if response.status_code == 401:
                self._authenticate(response.headers.get("WWW-Authenticate", ""))
                response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as error:
            raise RegistryError(f"registry {self.host} unreachable: {error}") from error
        return response

    def _authenticate(self, challenge: str) -> None:
        """Answer a Basic or Bearer (token) challenge; the session keeps the credentials."""
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic" and self.credentials:
            self.session.auth = self.credentials
        elif scheme.lower() == "bearer":
            fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
            realm = fields.pop("realm", None)
            if not realm:
                raise RegistryError(f"registry {self.host}: unusable challenge {challenge!r}")
            answer = requests.get(realm, params=fields, auth=self.credentials, timeout=self.timeout)
            answer.raise_for_status()
            body = answer.json()
            self.session.headers["Authorization"] = "Bearer " + body.get("token", body.get(
                "access_token", ""))

    def tags(self, repository: str) -> list[str]:
        """All tags of a repository ([] when it does not exist yet)."""
        response = self._request("GET", f"{repository}/tags/list")
        if response.status_code == 404:
            return []
        self._check(response, f"list the tags of {repository}")
        return response.json().get("tags") or []

    def manifest(self, repository: str, reference: str) -> tuple[str, str, bytes] | None:
        """(digest, media type, raw manifest) of a tag or digest, or None when unknown."""
        response = self._request("GET", f"{repository}/manifests/{reference}",
                                 headers={"Accept": MANIFEST_TYPES})
        if response.status_code == 404:
            return None
        self._check(response, f"read {repository}:{reference}")
        return (response.headers["Docker-Content-Digest"],
                response.headers["Content-Type"], response.content)

    def digest(self, repository: str, reference: str) -> str | None:
        found = self.manifest(repository, reference)
        return found[0] if found else None

    def config_digest(self, repository: str, reference: str) -> str | None:
        """The image ID (config digest) a tag points to: what the engine calls the image's id."""
        found = self.manifest(repository, reference)
        if not found:
            return None
        return json.loads(found[2]).get("config", {}).get("digest")

    def tag(self, repository: str, digest: str, tag: str) -> None:
        """Point `tag` at the manifest `digest` (no pull, no push of layers)."""
        found = self.manifest(repository, digest)
        if not found:
            raise RegistryError(f"{repository}@{digest} is not in registry {self.host}")
        _, media_type, raw = found
        response = self._request("PUT", f"{repository}/manifests/{tag}", data=raw,
                                 headers={"Content-Type": media_type})
        self._check(response, f"tag {repository}@{digest} as {tag}")

    def delete(self, repository: str, digest: str) -> None:
        """Delete a manifest (and so every tag on it); the registry must allow deletes."""
        response = self._request("DELETE", f"{repository}/manifests/{digest}")
        if response.status_code != 404:
            self._check(response, f"delete {repository}@{digest}")

    def _check(self, response: requests.Response, doing: str) -> None:
        if not response.ok:
            raise RegistryError(f"registry {self.host}: cannot {doing}: "
                                f"{response.status_code} {response.text[:300]}")
