"""Deploy and roll back releases: registry tags in, a running service and a `production` tag out.

Independent of where the service runs: that is the driver's business (DEPLOY_TARGET).
"""
from __future__ import annotations

import semver

from deploy.docker_driver import DeployError, Deployment, DockerDriver, Release
from deploy.kubernetes_driver import KubernetesDriver
from deploy.registry import Registry, RegistryError, is_stable, release_versions
from deploy.settings import Settings

DRIVERS = {DockerDriver.name: DockerDriver, KubernetesDriver.name: KubernetesDriver}


def driver_for(target: str, settings: Settings):
    try:
        return DRIVERS[target](settings)
    except KeyError:
        raise DeployError(f"unknown DEPLOY_TARGET {target!r}; known: {', '.join(DRIVERS)}")


# How many earlier versions a deployment remembers (a container label).
HISTORY_LENGTH = 20


def known_versions(settings: Settings, registry: Registry) -> list[str]:
    return release_versions(registry.tags(settings.repository))


def describe(versions: list[str]) -> str:
    """The stable releases by name, the pre-releases and development builds by number."""
    stable = [v for v in versions if is_stable(v)]
    others = len(versions) - len(stable)
    return (", ".join(stable) or "none") + (f" (and {others} pre-releases or development "
                                            "builds)" if others else "")


def release(settings: Settings, registry: Registry, version: str) -> Release:
    digest = registry.digest(settings.repository, version)
    if not digest:
        raise DeployError(f"{settings.remote}:{version} is not in the registry (`make push` "
                          f"puts it there); releases: "
                          f"{describe(known_versions(settings, registry))}")
    return Release(version, f"{settings.remote}@{digest}")


def history_after(current: Deployment | None) -> tuple[str, ...]:
    """What a deployment that replaces `current` remembers: what served before it."""
    if current is None:
        return ()
    return (current.history + (current.version,))[-HISTORY_LENGTH:]


def deploy(settings: Settings, driver, registry: Registry, version: str,
           history: tuple[str, ...] | None = None) -> Deployment:
    if history is None:
        history = history_after(driver.current())
    deployment = driver.deploy(release(settings, registry, version), history)
    digest = deployment.image.rpartition("@")[2]
    try:  # the environment's tag: `production`, or e.g. `staging` for a Kubernetes overlay
        registry.tag(settings.repository, digest, driver.environment)
    except RegistryError as error:
        raise DeployError(f"{version} is deployed and serves at {deployment.url}, but the "
                          f"registry's {driver.environment} tag still points elsewhere: {error}")
    return deployment


def rollback_target(versions: list[str], current: Deployment | None,
                    wanted: str | None) -> tuple[str, tuple[str, ...]]:
    """(the release to go back to, the history it then carries).

    `wanted` when given (any release, pre-releases included). Otherwise the last stable
    release that served before the current one, from the deployment's history: a second
    rollback goes further back, not forth again. Without any history (a deployment made
    before histories were kept), the stable release before the current one in semver order.
    """
    if wanted:
        if wanted not in versions:
            raise DeployError(f"unknown version {wanted}; releases: {describe(versions)}")
        return wanted, history_after(current)
    if current is None:
        raise DeployError(f"nothing is deployed, so there is nothing to roll back from; "
                          f"give VERSION (releases: {describe(versions)})")
    for i in range(len(current.history) - 1, -1, -1):
        version = current.history[i]
        if version != current.version and is_stable(version) and version in versions:
            return version, current.history[:i]
    if current.history:
        raise DeployError(f"no stable release served before {current.version} here (it "
                          f"followed {', '.join(current.history)}); give VERSION (releases: "
                          f"{describe(versions)})")
    earlier = [v for v in versions if is_stable(v) and semver.Version.is_valid(current.version)
               and semver.Version.parse(v).compare(current.version) < 0]
    if not earlier:
        raise DeployError(f"no stable release before {current.version}; releases: "
                          f"{describe(versions)}")
    return earlier[-1], ()


def rollback(settings: Settings, driver, registry: Registry,
             version: str | None = None) -> Deployment:
    target, history = rollback_target(known_versions(settings, registry), driver.current(),
                                      version)
    return deploy(settings, driver, registry, target, history)
