"""Deploy target `docker`: one Docker engine, local or remote (DOCKER_HOST=ssh://user@host).

A switch with no failed request, on one host port:
1. pull the release by digest;
2. preflight: start it bound only to a private unix socket and wait until it is ready, so an
   image that never becomes ready is removed before it could take a single connection;
3. start it for real on the host network, on the service's port with SO_REUSEPORT, next to
   the old container: the kernel spreads new connections over both;
4. once it answers /readyz (asked through its own socket, since both share the port), stop
   the old one gracefully: gunicorn finishes the requests it has and exits.
The containers carry labels that say what is deployed (`docker ps --filter label=...`).
"""
from __future__ import annotations

import datetime
import os
import time
import urllib.parse
from dataclasses import dataclass

from deploy.image import docker_client
from deploy.settings import Settings

LABEL = "ml.deploy"
SERVICE_LABEL = f"{LABEL}.service"
ROLE_LABEL = f"{LABEL}.role"
VERSION_LABEL = f"{LABEL}.version"
IMAGE_LABEL = f"{LABEL}.image"
PORT_LABEL = f"{LABEL}.port"
DEPLOYED_AT_LABEL = f"{LABEL}.deployed-at"
# In the container's own /tmp (a tmpfs), so no other container can answer for it.
HEALTH_SOCKET = "/tmp/gunicorn-health.sock"
HEALTHCHECK = ["python3", "-m", "deploy.healthcheck"]


class DeployError(RuntimeError):
    pass


class NotReady(Exception):
    pass


@dataclass(frozen=True)
class Release:
    version: str
    reference: str  # repository@sha256:...


@dataclass(frozen=True)
class Deployment:
    service: str
    version: str
    image: str
    container: str
    url: str


def host_of(docker_host: str | None) -> str:
    """The address clients use for a service on the engine's host network."""
    if not docker_host or docker_host.startswith(("unix:", "npipe:")):
        return "127.0.0.1"
    return urllib.parse.urlsplit(docker_host).hostname or "127.0.0.1"


class DockerDriver:
    name = "docker"

    def __init__(self, settings: Settings, client=None):
        self.settings = settings
        self.client = client or docker_client()

    def url(self) -> str:
        return f"http://{host_of(os.environ.get('DOCKER_HOST'))}:{self.settings.port}/"

    def containers(self, role: str | None = "service", running_only: bool = False) -> list:
        labels = [f"{SERVICE_LABEL}={self.settings.service}"]
        if role:
            labels.append(f"{ROLE_LABEL}={role}")
        found = self.client.containers.list(all=not running_only, filters={"label": labels})
        return sorted(found, key=lambda c: c.labels.get(DEPLOYED_AT_LABEL, ""))

    def current(self) -> Deployment | None:
        running = self.containers(running_only=True)
        if not running:
            return None
        newest = running[-1]
        return Deployment(self.settings.service, newest.labels[VERSION_LABEL],
                          newest.labels[IMAGE_LABEL], newest.name, self.url())

    def deploy(self, release: Release) -> Deployment:
        self._pull(release)
        old = self.containers()
        serving = ", ".join(c.labels.get(VERSION_LABEL, c.name) for c in old
                            if c.status == "running") or "nothing"
        for public in (False, True):
            container = self._start(release, public=public)
            try:
                self._wait_ready(container)
            except NotReady as reason:
                container.remove(force=True)
                raise DeployError(
                    f"{release.version} never became ready ({reason}); the new container was "
                    f"removed and {serving} keeps serving on port {self.settings.port}")
            if not public:
                container.remove(force=True)
        for previous in old:
            # SIGTERM: gunicorn stops accepting, finishes in-flight requests, exits.
            previous.stop(timeout=self.settings.stop_timeout)
            previous.remove()
        return Deployment(self.settings.service, release.version, release.reference,
                          container.name, self.url())

    def _pull(self, release: Release) -> None:
        import docker.errors
        try:
            self.client.images.pull(release.reference)
        except docker.errors.APIError as error:
            raise DeployError(f"cannot pull {release.reference}: "
                              f"{error.explanation or error}") from error

    def _start(self, release: Release, public: bool):
        role = "service" if public else "preflight"
        now = datetime.datetime.now(datetime.timezone.utc)
        binds = f"--bind=unix:{HEALTH_SOCKET}"
        if public:
            binds = f"--bind=0.0.0.0:{self.settings.port} --reuse-port " + binds
        return self.client.containers.run(
            release.reference,
            name=f"{self.settings.service}-{release.version}-{role}-{now:%Y%m%d%H%M%S%f}",
            detach=True,
            network_mode="host",
            read_only=True,
            tmpfs={"/tmp": "rw,nosuid,nodev,size=64m"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            environment={
                "PORT": str(self.settings.port),
                "MODEL_NAME": self.settings.model_name,
                "HEALTH_SOCKET": HEALTH_SOCKET,
                # Overrides the image's gunicorn config: binds are the driver's business.
                "GUNICORN_CMD_ARGS": binds,
            },
            labels={
                SERVICE_LABEL: self.settings.service,
                ROLE_LABEL: role,
                VERSION_LABEL: release.version,
                IMAGE_LABEL: release.reference,
                PORT_LABEL: str(self.settings.port),
                DEPLOYED_AT_LABEL: now.isoformat(),
            },
            restart_policy={"Name": "unless-stopped"} if public else None,
        )

    def _wait_ready(self, container) -> None:
        import docker.errors
        deadline = time.monotonic() + self.settings.ready_timeout
        seen = "not started"
        while time.monotonic() < deadline:
            container.reload()
            state = container.attrs["State"]
            if state["Status"] in ("exited", "dead") or state.get("Restarting"):
                logs = container.logs(tail=15).decode(errors="replace").strip()
                raise NotReady(f"its container exited with code {state['ExitCode']}; "
                               f"last log lines:\n{logs}")
            try:
                result = container.exec_run(HEALTHCHECK)
                if result.exit_code == 0:
                    return
                seen = result.output.decode(errors="replace").strip()
            except docker.errors.APIError as error:
                seen = str(error.explanation or error)
            time.sleep(0.25)
        raise NotReady(f"not ready after {self.settings.ready_timeout:g} s; last probe: {seen}")
