"""The settings every command shares, from the Makefile's contract variables (environment)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass


# The engine waits this long past gunicorn's graceful timeout before it kills a container, so
# gunicorn always ends its requests (and itself) first.
STOP_MARGIN_S = 10


@dataclass(frozen=True)
class Settings:
    registry: str = "127.0.0.1:5000"
    image: str = "model-service"
    version: str = "0.0.0-dev"
    port: int = 8501
    model_name: str = "model"
    model_dir: str = "artifacts"
    base_image: str = "python:3.11-slim"
    docker_cli: str = "docker"
    # Seconds a new container gets to become ready, and an old one to finish its requests
    # (gunicorn's GRACEFUL_TIMEOUT, which the deploy sets in the container).
    ready_timeout: float = 60.0
    graceful_timeout: int = 30
    # DEPLOY_TARGET=kubernetes: the overlay deploy/k8s/overlays/<environment> (also the registry
    # tag a successful deploy moves), a namespace instead of the overlay's, the kubectl to call.
    environment: str = "production"
    namespace: str = ""
    kubectl: str = "kubectl"
    # CANARY=1: a deploy first runs the release as a canary of CANARY_REPLICAS pods next to the
    # stable ones, compared over CANARY_WINDOW seconds once each side has CANARY_REQUESTS
    # requests (deploy/canary.py), and promotes or aborts it.
    canary: bool = False
    canary_replicas: int = 1
    canary_window: float = 300.0
    canary_requests: int = 200

    @classmethod
    def from_env(cls, environ=os.environ) -> Settings:
        def get(name, default):
            return environ.get(name) or default
        return cls(
            registry=get("REGISTRY", cls.registry),
            image=get("IMAGE", cls.image),
            version=get("VERSION", cls.version),
            port=int(get("PORT", cls.port)),
            model_name=get("MODEL_NAME", cls.model_name),
            model_dir=get("MODEL_DIR", cls.model_dir),
            base_image=get("BASE_IMAGE", cls.base_image),
            docker_cli=get("DOCKER", cls.docker_cli),
            ready_timeout=float(get("DEPLOY_READY_TIMEOUT", cls.ready_timeout)),
            graceful_timeout=int(get("GRACEFUL_TIMEOUT", cls.graceful_timeout)),
            environment=get("DEPLOY_ENVIRONMENT", cls.environment),
            namespace=get("KUBE_NAMESPACE", cls.namespace),
            kubectl=get("KUBECTL", cls.kubectl),
            canary=get("CANARY", "0") not in ("0", "false", "no"),
            canary_replicas=int(get("CANARY_REPLICAS", cls.canary_replicas)),
            canary_window=float(get("CANARY_WINDOW", cls.canary_window)),
            canary_requests=int(get("CANARY_REQUESTS", cls.canary_requests)),
        )

    @property
    def stop_timeout(self) -> int:
        """Seconds the engine waits after SIGTERM before it kills: past gunicorn's own limit."""
        return self.graceful_timeout + STOP_MARGIN_S

    @property
    def repository(self) -> str:
        """The image's repository name inside the registry (no host)."""
        return self.image

    @property
    def remote(self) -> str:
        """The image's full name in the registry, without tag."""
        return f"{self.registry}/{self.image}"

    @property
    def service(self) -> str:
        """The deployment's name: prefix of its container names and value of its label."""
        return re.sub(r"[^a-zA-Z0-9_.-]", "-", self.image)
