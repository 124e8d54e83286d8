"""The serving image: build it (docker CLI with BuildKit), push it, and read the model out of it.

Builds go through the CLI because the Docker SDK cannot build with BuildKit (secrets, cache
mounts); everything else goes through the SDK, which honours DOCKER_HOST (ssh:// included).
"""
from __future__ import annotations

import datetime
import io
import os
import subprocess
import tarfile
from pathlib import Path

import semver

from contract.errors import InputError
from contract.manifest import MANIFEST_FILE, MODEL_FILE, Manifest
from deploy.registry import ABSENT, Registry
from deploy.settings import Settings

# Where the Dockerfile puts the model when the image's own MODEL_DIR says nothing else.
IMAGE_MODEL_DIR = "/opt/model"
DEFAULT_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
SHA_TAG_PREFIX = "sha-"
BASE_LABEL = "org.opencontainers.image.base.name"
BASE_MARKER = f"LABEL {BASE_LABEL}="


class ImageError(RuntimeError):
    pass


class NoSuchImage(ImageError):
    """The registry answers that it has no such tag (manifest unknown); not a failure to ask."""


def docker_client():
    """An SDK client for DOCKER_HOST (or the local socket).

    ssh:// goes through paramiko, which reads HostName, Port, User and IdentityFile from
    ~/.ssh/config and wants the host in ~/.ssh/known_hosts: it keeps one connection open, where
    the ssh binary would take a new one per API call and breaks `docker exec` streams.
    """
    import docker
    try:
        return docker.from_env(timeout=300)
    except Exception as error:  # the SDK, paramiko and sockets each raise their own kind
        where = os.environ.get("DOCKER_HOST") or "the local socket"
        raise ImageError(f"no Docker engine answers at {where}: "
                         f"{type(error).__name__}: {error}") from error


def git(*args: str, default: str = "unknown") -> str:
    try:
        return subprocess.run(["git", *args], check=True, capture_output=True,
                              text=True).stdout.strip() or default
    except (OSError, subprocess.CalledProcessError):
        return default


def sha_tag(revision: str) -> str:
    return SHA_TAG_PREFIX + revision[:7]


def source_url() -> str:
    if os.environ.get("GITHUB_REPOSITORY"):
        server = os.environ.get("GITHUB_SERVER_URL", "https://github.com")
        return f"{server}/{os.environ['GITHUB_REPOSITORY']}"
    return git("remote", "get-url", "origin")


def check_version(version: str) -> str:
    """Release tags are semantic versions (so rollback can order them) and valid image tags."""
    if not semver.Version.is_valid(version) or "+" in version:
        raise ImageError(f"VERSION {version!r} is not a semantic version without build metadata "
                         "(such as 1.2.0 or 1.3.0-rc.1)")
    return version


def is_development(version: str) -> bool:
    return str(semver.Version.parse(version).prerelease or "").startswith("dev")


def model_labels(model_dir: Path) -> dict[str, str]:
    """Build arguments that label the image with the model inside it, from manifest.json."""
    missing = [name for name in (MODEL_FILE, MANIFEST_FILE) if not (model_dir / name).is_file()]
    if missing:
        raise ImageError(f"{model_dir} lacks {', '.join(missing)}: run `make train` first")
    try:
        manifest = Manifest.load(model_dir)
        model = manifest.raw["model"]
        return {
            "MODEL_VERSION": manifest.version,
            "MODEL_SHA256": manifest.model_sha256,
            "PRIMARY_METRIC": model["primary_metric"],
            "PRIMARY_METRIC_VALUE": str(model["primary_metric_value"]),
        }
    except InputError as error:
        raise ImageError(str(error)) from error
    except (KeyError, TypeError) as error:
        raise ImageError(f"{model_dir / MANIFEST_FILE}: not a training manifest: it lacks "
                         f"the model's primary metric ({type(error).__name__}: {error})") from error


def build_command(settings: Settings, context: Path) -> tuple[list[str], list[str]]:
    """The `docker build` command line and the tags it gives."""
    version = check_version(settings.version)
    context = context.resolve()
    model_dir = Path(settings.model_dir).resolve()
    if not model_dir.is_relative_to(context):
        raise ImageError(f"MODEL_DIR {settings.model_dir} must be inside the build context "
                         f"{context} (the Dockerfile copies it from there)")
    revision = git("rev-parse", "HEAD")
    args = {
        "BASE_IMAGE": settings.base_image,
        "MODEL_DIR": model_dir.relative_to(context).as_posix(),
        "VERSION": version,
        "REVISION": revision,
        "CREATED": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "SOURCE": source_url(),
        **model_labels(model_dir),
    }
    tags = [f"{settings.image}:{version}", f"{settings.image}:{sha_tag(revision)}"]
    command = [settings.docker_cli, "build", "--network", "host"]
    ca_bundle = os.environ.get("PIP_CERT") or DEFAULT_CA_BUNDLE
    if Path(ca_bundle).is_file():
        command += ["--secret", f"id=pip_cert,src={ca_bundle}"]
    for name, value in args.items():
        command += ["--build-arg", f"{name}={value}"]
    for tag in tags:
        command += ["--tag", tag]
    return command + [str(context)], tags


def build(settings: Settings, context: Path = Path(".")) -> list[str]:
    command, tags = build_command(settings, context)
    print("  $ " + " ".join(command), flush=True)
    result = subprocess.run(command, env={**os.environ, "DOCKER_BUILDKIT": "1"})
    if result.returncode:
        raise ImageError(f"docker build failed (exit {result.returncode})")
    return tags


def sizes(reference: str, client=None) -> tuple[int, int]:
    """(total, added over the base) uncompressed bytes of a built image, from its own history.

    The Dockerfile's final stage opens with the LABEL naming the base image: the history
    entries after it are this image's layers. The base itself need not be in the engine's
    store (BuildKit pulls it into its own cache, as on a fresh CI runner).
    """
    client = client or docker_client()
    history = client.images.get(reference).history()  # newest first
    try:
        boundary = next(i for i, entry in enumerate(history)
                        if BASE_MARKER in (entry.get("CreatedBy") or ""))
    except StopIteration:
        raise ImageError(f"{reference}: no `LABEL {BASE_LABEL}=...` in its history, so its "
                         "own layers cannot be told from its base's (is it built from this "
                         "project's Dockerfile?)") from None
    return (sum(entry["Size"] for entry in history),
            sum(entry["Size"] for entry in history[:boundary]))


def push(settings: Settings, client=None, registry: Registry | None = None) -> str:
    """Push IMAGE:VERSION and its sha-<commit> tag; return the digest in the registry.

    Version tags are immutable: pushing another image under a version already in the
    registry is refused. Development builds (0.0.0-dev.g<commit>, the Makefile's VERSION on an
    untagged commit) are the exception, so the local pipeline can run twice on one commit;
    the sha- tag follows the latest build of a commit.
    """
    import docker.errors
    client = client or docker_client()
    registry = registry or Registry(settings.registry)
    version = check_version(settings.version)
    try:
        image = client.images.get(f"{settings.image}:{version}")
    except docker.errors.ImageNotFound:
        raise ImageError(f"no local image {settings.image}:{version}: run `make build` first")
    there = registry.config_digest(settings.repository, version)
    if there and there != image.id and not is_development(version):
        raise ImageError(f"{settings.remote}:{version} already exists with another image "
                         f"({there}); release tags are immutable: use a new VERSION")
    revision = (image.labels or {}).get("org.opencontainers.image.revision", "unknown")
    for tag in (version, sha_tag(revision)):
        image.tag(settings.remote, tag)
        for event in client.images.push(settings.remote, tag=tag, stream=True, decode=True):
            if "error" in event:
                raise ImageError(f"push of {settings.remote}:{tag} failed: {event['error']}")
    return registry.digest(settings.repository, version)


def extract_model(reference: str, destination: Path, client=None) -> Path:
    """Copy the model directory out of an image, without running it; pull it when absent."""
    import docker.errors
    client = client or docker_client()
    try:
        image = client.images.get(reference)
    except docker.errors.ImageNotFound:
        try:
            image = client.images.pull(reference)
        except docker.errors.APIError as error:
            reason = str(error.explanation or error)
            kind = NoSuchImage if ABSENT.search(reason) else ImageError
            raise kind(f"image {reference} is neither local nor pullable: {reason}") from error
    env = dict(item.split("=", 1) for item in image.attrs["Config"].get("Env") or [])
    source = env.get("MODEL_DIR", IMAGE_MODEL_DIR)
    container = client.containers.create(image.id, command=["true"])
    try:
        stream, _ = container.get_archive(source + "/.")
        archive = io.BytesIO(b"".join(stream))
    finally:
        container.remove(force=True)
    destination.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=archive) as tar:
        tar.extractall(destination, filter="data")
    # The archive's top entry is the directory itself ("."), so files land directly in it.
    return destination
