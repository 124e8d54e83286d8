"""Deploy and roll back releases: registry tags in, a running service and a `production` tag out.

Independent of where the service runs: that is the driver's business (DEPLOY_TARGET).
"""
from __future__ import annotations

import semver

from deploy.docker_driver import DeployError, Deployment, DockerDriver, Release
from deploy.kubernetes_driver import KubernetesDriver
from deploy.registry import Registry, RegistryError, release_versions
from deploy.settings import Settings

DRIVERS = {DockerDriver.name: DockerDriver, KubernetesDriver.name: KubernetesDriver}


def driver_for(target: str, settings: Settings):
    try:
        return DRIVERS[target](settings)
    except KeyError:
        raise DeployError(f"unknown DEPLOY_TARGET {target!r}; known: {', '.join(DRIVERS)}")


def known_versions(settings: Settings, registry: Registry) -> list[str]:
    return release_versions(registry.tags(settings.repository))


def release(settings: Settings, registry: Registry, version: str) -> Release:
    digest = registry.digest(settings.repository, version)
    if not digest:
        known = ", ".join(known_versions(settings, registry)) or "none"
        raise DeployError(f"{settings.remote}:{version} is not in the registry "
                          f"(`make push` puts it there); known releases: {known}")
    return Release(version, f"{settings.remote}@{digest}")


def deploy(settings: Settings, driver, registry: Registry, version: str) -> Deployment:
    deployment = driver.deploy(release(settings, registry, version))
    digest = deployment.image.rpartition("@")[2]
    try:  # the environment's tag: `production`, or e.g. `staging` for a Kubernetes overlay
        registry.tag(settings.repository, digest, driver.environment)
    except RegistryError as error:
        raise DeployError(f"{version} is deployed and serves at {deployment.url}, but the "
                          f"registry's {driver.environment} tag still points elsewhere: {error}")
    return deployment


def rollback_target(versions: list[str], current: str | None, wanted: str | None) -> str:
    """The release to go back to: `wanted`, else the one before `current` in semver order."""
    known = ", ".join(versions) or "none"
    if wanted:
        if wanted not in versions:
            raise DeployError(f"unknown version {wanted}; known releases: {known}")
        return wanted
    if current is None:
        raise DeployError(f"nothing is deployed, so there is nothing to roll back from; "
                          f"give VERSION (known releases: {known})")
    earlier = [v for v in versions if semver.Version.is_valid(current)
               and semver.Version.parse(v).compare(current) < 0]
    if not earlier:
        raise DeployError(f"no release before {current}; known releases: {known}")
    return earlier[-1]


def rollback(settings: Settings, driver, registry: Registry,
             version: str | None = None) -> Deployment:
    current = driver.current()
    target = rollback_target(known_versions(settings, registry),
                             current.version if current else None, version)
    return deploy(settings, driver, registry, target)
