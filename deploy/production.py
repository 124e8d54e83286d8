"""Which image the gate must beat: the registry's `production` tag, pinned to its digest.

"Nothing in production yet" must be told apart from "cannot read production". Only a registry
that says the tag or the repository is unknown proves the first; an outage, a rate limit or a
token without access fails with the reason, so a gate never passes for want of a champion.
One exception is ghcr.io, which answers DENIED, not NAME_UNKNOWN, for a package that does not
exist yet (the first push of a new repository): there GitHub's packages API tells the two
apart, and a 404 from it means no package, so no champion.
"""
from __future__ import annotations

import os
import re

import requests

from deploy.registry import PRODUCTION_TAG, Registry, RegistryError
from deploy.settings import Settings

DENIED = re.compile(r"denied|unauthorized", re.IGNORECASE)


def champion(settings: Settings, registry: Registry, environ=os.environ) -> str | None:
    """`REGISTRY/IMAGE@sha256:...` of the production image, or None when there is none."""
    try:
        digest = registry.digest(settings.repository, PRODUCTION_TAG)
    except RegistryError as error:
        if (settings.registry == "ghcr.io" and DENIED.search(str(error))
                and not ghcr_package_exists(settings.image, environ)):
            return None
        raise
    return f"{settings.remote}@{digest}" if digest else None


def ghcr_package_exists(image: str, environ=os.environ) -> bool:
    """Ask GitHub's packages API whether the container package `owner/name` exists (True when
    it cannot tell: then the registry's refusal stands)."""
    token = environ.get("GITHUB_TOKEN") or environ.get("REGISTRY_PASSWORD")
    owner, _, name = image.partition("/")
    if not token or not name:
        return True
    api = environ.get("GITHUB_API_URL", "https://api.github.com")
    package = requests.utils.quote(name, safe="")
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"}
    answers = []
    # An owner is a user or an organization; the API has one path for each.
    for kind in ("users", "orgs"):
        try:
            response = requests.get(f"{api}/{kind}/{owner}/packages/container/{package}",
                                    headers=headers, timeout=30)
        except requests.RequestException:
            return True
        answers.append(response.status_code)
        if response.status_code == 200:
            return True
    return any(status != 404 for status in answers)
