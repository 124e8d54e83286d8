"""Build once, promote the digest.

A push to the default branch publishes its image as `sha-<commit>` only after lint, the tests,
the gate and the smoke test passed (ci.yml). A release tag on that commit then re-tags that
image's digest as the version: no retraining, no rebuild, the bytes that were tested are the
bytes that ship. Only when no such image exists does the release train and build its own.

`find` is read-only and safe to repeat; `promote` is idempotent: a release that already points
at the commit's image is left as it is, one that points at another image is refused.
"""
from __future__ import annotations

from dataclasses import dataclass

from deploy.image import ImageError, check_version, is_development, sha_tag
from deploy.registry import Registry
from deploy.settings import Settings


@dataclass(frozen=True)
class Candidate:
    digest: str
    source: str     # the tag it was found under: sha-<commit>, or the version on a re-run
    released: bool  # the version tag already points at it

    def reference(self, settings: Settings) -> str:
        return f"{settings.remote}@{self.digest}"


def release_version(settings: Settings) -> str:
    version = check_version(settings.version)
    if is_development(version):
        raise ImageError(f"VERSION {version} is a development build: only a release "
                         "(such as 1.2.0 or 1.3.0-rc.1) is promoted")
    return version


def find(settings: Settings, registry: Registry, commit: str) -> Candidate | None:
    """The image published for `commit`, or None when the release must build its own."""
    version = release_version(settings)
    built_tag = sha_tag(commit)
    built = registry.digest(settings.repository, built_tag)
    released = registry.digest(settings.repository, version)
    if released is None:
        return Candidate(built, built_tag, released=False) if built else None
    if released != built:
        # Release tags are immutable: never move one to another image.
        raise ImageError(f"{settings.remote}:{version} already exists ({released}) and is not "
                         f"the image of commit {commit[:7]} ({built or 'none published'}): "
                         "a release tag names one image forever; tag a new version")
    return Candidate(released, version, released=True)


def promote(settings: Settings, registry: Registry, commit: str) -> Candidate:
    """Tag the commit's published image as VERSION (nothing to do when it already is)."""
    candidate = find(settings, registry, commit)
    if candidate is None:
        raise ImageError(f"no image of commit {commit[:7]} in {settings.remote} (tag "
                         f"{sha_tag(commit)}): nothing to promote; `make build push` instead")
    if not candidate.released:
        registry.tag(settings.repository, candidate.digest, release_version(settings))
    return candidate
