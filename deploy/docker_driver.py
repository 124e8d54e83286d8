"""Deploy target `docker`: one Docker engine, local or remote (DOCKER_HOST=ssh://user@host).

A switch with no failed request, on one host port:
1. pull the release by digest;
2. preflight: start it bound only to a private port and wait until it is ready, so an image
   that never becomes ready is removed before it could take a single connection;
3. start it for real on the host network, on the service's port with SO_REUSEPORT, next to
   the old container (the kernel spreads new connections over both), and on the private port;
4. once it answers /readyz on its private port (the shared one may answer for the old
   container), stop the old one gracefully: gunicorn finishes the requests it has and exits.
   With net.ipv4.tcp_migrate_req=1 on the host, connections still waiting in the old
   listeners' queues move to the new ones instead of being reset.
The containers carry labels that say what is deployed (`docker ps --filter label=...`).
"""
from __future__ import annotations

import datetime
import os
import time
import urllib.parse
from dataclasses import dataclass

from deploy.image import docker_client
from deploy.registry import PRODUCTION_TAG
from deploy.settings import Settings

LABEL = "ml.deploy"
SERVICE_LABEL = f"{LABEL}.service"
ROLE_LABEL = f"{LABEL}.role"
VERSION_LABEL = f"{LABEL}.version"
IMAGE_LABEL = f"{LABEL}.image"
PORT_LABEL = f"{LABEL}.port"
DEPLOYED_AT_LABEL = f"{LABEL}.deployed-at"
# The versions that served on this target before this one, oldest first, comma-separated:
# what a rollback without a version walks back through.
HISTORY_LABEL = f"{LABEL}.history"
# A deploy holds the target by creating a container of this name (names are unique per engine,
# so of two deploys one gets it); a lock older than this is left from a killed deploy.
LOCK_SUFFIX = "-deploy-lock"
LOCK_STALE_S = 30 * 60
# How every container of the image runs, in production and in the smoke test: on the host
# network, read-only (a tmpfs for gunicorn's heartbeat files and control socket), no privileges.
RUN_OPTIONS = {
    "network_mode": "host",
    "read_only": True,
    "tmpfs": {"/tmp": "rw,nosuid,nodev,size=64m"},
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges"],
}
# Run in the new container with its own python: the probe must not depend on the image's code,
# only on /readyz, whose 503 body says "failed" when the service will never be ready.
PROBE_FAILED = 3
PROBE = """import json, sys, urllib.error, urllib.request
try:
    urllib.request.urlopen("http://127.0.0.1:%(port)d/readyz", timeout=2)
except urllib.error.HTTPError as error:
    try:
        body = json.loads(error.read())
    except ValueError:
        body = {}
    if isinstance(body, dict) and body.get("status") == "failed":
        print(body.get("reason"))
        sys.exit(%(failed)d)
    sys.exit(f"/readyz: {error}")
except Exception as error:
    sys.exit(f"/readyz: {error}")"""
# Asks the engine's host (through the host network) for a free port and whether closing
# listeners hand their queued connections over to the others in their SO_REUSEPORT group
# ("missing" on kernels before 5.14, which lack the setting).
MIGRATE_REQ = "/proc/sys/net/ipv4/tcp_migrate_req"
HOST_FACTS = """import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
try:
    migrate = open(sys.argv[1]).read().strip()
except OSError:
    migrate = "missing"
print(s.getsockname()[1], migrate)"""


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
    history: tuple[str, ...] = ()


def migrate_warning(value: str) -> str:
    state = "does not exist (a kernel before 5.14)" if value == "missing" else f"is {value}"
    return (f"warning: net.ipv4.tcp_migrate_req {state} on the engine's host, so connections "
            "waiting in the old container's queue when it stops are reset; set it to 1 for a "
            "switch with no failed request")


def host_of(docker_host: str | None) -> str:
    """The address clients use for a service on the engine's host network."""
    if not docker_host or docker_host.startswith(("unix:", "npipe:")):
        return "127.0.0.1"
    return urllib.parse.urlsplit(docker_host).hostname or "127.0.0.1"


class DockerDriver:
    name = "docker"
    environment = PRODUCTION_TAG  # the registry tag a successful deploy moves

    def __init__(self, settings: Settings, client=None, log=print):
        self.settings = settings
        self.client = client or docker_client()
        self.log = log

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
        history = tuple(v for v in newest.labels.get(HISTORY_LABEL, "").split(",") if v)
        return Deployment(self.settings.service, newest.labels[VERSION_LABEL],
                          newest.labels[IMAGE_LABEL], newest.name, self.url(), history)

    def deploy(self, release: Release, history: tuple[str, ...] = ()) -> Deployment:
        """Switch to `release`; `history` (what served before it) goes on its container."""
        others = [c.labels.get(SERVICE_LABEL) for c in self.client.containers.list(
            filters={"label": f"{PORT_LABEL}={self.settings.port}"})
            if c.labels.get(SERVICE_LABEL) != self.settings.service]
        if others:
            # Same uid, same port, SO_REUSEPORT: the kernel would mix the two services' traffic.
            raise DeployError(f"port {self.settings.port} is taken by {', '.join(others)}; "
                              "give this service another PORT")
        self._pull(release)
        lock = self._lock(release)
        try:
            return self._switch(release, history)
        finally:
            lock.remove(force=True)

    def _lock(self, release: Release):
        import docker.errors
        name = self.settings.service + LOCK_SUFFIX
        now = datetime.datetime.now(datetime.timezone.utc)
        for _ in range(2):
            try:
                return self.client.containers.create(
                    release.reference, ["true"], name=name,
                    labels={SERVICE_LABEL: self.settings.service, ROLE_LABEL: "lock",
                            VERSION_LABEL: release.version, DEPLOYED_AT_LABEL: now.isoformat()})
            except docker.errors.APIError as error:
                if error.status_code != 409:
                    raise
            holder = self.client.containers.get(name)
            since = datetime.datetime.fromisoformat(holder.labels[DEPLOYED_AT_LABEL])
            if (now - since).total_seconds() < LOCK_STALE_S:
                raise DeployError(
                    f"another deploy of {self.settings.service} (to "
                    f"{holder.labels.get(VERSION_LABEL)}) holds this target since "
                    f"{since:%H:%M:%S} UTC; try again when it is done (a deploy that was killed "
                    f"leaves the container {name}: `docker rm {name}` frees the target)")
            self.log(f"removing {name}, left {now - since} ago by a deploy that never ended")
            holder.remove(force=True)
        raise DeployError(f"could not take the deploy lock {name}")

    def _switch(self, release: Release, history: tuple[str, ...]) -> Deployment:
        started = time.monotonic()
        for leftover in self.containers(role="preflight"):
            leftover.remove(force=True)
        old = self.containers()
        serving = ", ".join(c.labels.get(VERSION_LABEL, c.name) for c in old
                            if c.status == "running") or "nothing"
        private_port, migrate = self.client.containers.run(
            release.reference, ["python3", "-c", HOST_FACTS, MIGRATE_REQ],
            network_mode="host", remove=True).decode().split()
        if migrate != "1":
            self.log(migrate_warning(migrate))
        for public in (False, True):
            container = self._start(release, int(private_port), public, history)
            try:
                self._wait_ready(container, int(private_port))
            except NotReady as reason:
                container.remove(force=True)
                raise DeployError(
                    f"{release.version} never became ready ({reason}); the new container was "
                    f"removed; still serving on port {self.settings.port}: {serving}")
            except BaseException:  # interrupted, or the engine went away: leave the old alone
                container.remove(force=True)
                raise
            self.log(f"{container.name} ready after {time.monotonic() - started:.1f} s")
            if not public:
                container.remove(force=True)
        for previous in old:
            # SIGTERM: gunicorn stops accepting, finishes in-flight requests, exits.
            previous.stop(timeout=self.settings.stop_timeout)
            previous.remove()
            self.log(f"{previous.name} stopped and removed")
        return Deployment(self.settings.service, release.version, release.reference,
                          container.name, self.url(), history)

    def _pull(self, release: Release) -> None:
        import docker.errors
        try:
            self.client.images.pull(release.reference)
        except docker.errors.APIError as error:
            raise DeployError(f"cannot pull {release.reference}: "
                              f"{error.explanation or error}") from error

    def _start(self, release: Release, private_port: int, public: bool,
               history: tuple[str, ...]):
        role = "service" if public else "preflight"
        now = datetime.datetime.now(datetime.timezone.utc)
        binds = f"--bind=127.0.0.1:{private_port}"
        if public:
            binds = f"--bind=0.0.0.0:{self.settings.port} --reuse-port " + binds
        return self.client.containers.run(
            release.reference,
            name=f"{self.settings.service}-{release.version}-{role}-{now:%Y%m%d%H%M%S%f}",
            detach=True,
            **RUN_OPTIONS,
            environment={
                "PORT": str(self.settings.port),
                "MODEL_NAME": self.settings.model_name,
                "HEALTH_PORT": str(private_port),
                "GRACEFUL_TIMEOUT": str(self.settings.graceful_timeout),
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
                HISTORY_LABEL: ",".join(history),
            },
            restart_policy={"Name": "unless-stopped"} if public else None,
        )

    def _wait_ready(self, container, private_port: int) -> None:
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
                result = container.exec_run(
                    ["python3", "-c", PROBE % {"port": private_port, "failed": PROBE_FAILED}])
                if result.exit_code == 0:
                    return
                seen = result.output.decode(errors="replace").strip()
                if result.exit_code == PROBE_FAILED:
                    raise NotReady(f"it says it cannot become ready: {seen}")
            except docker.errors.APIError as error:
                seen = str(error.explanation or error)
            time.sleep(0.25)
        raise NotReady(f"not ready after {self.settings.ready_timeout:g} s; last probe: {seen}")
