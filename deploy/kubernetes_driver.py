"""Deploy target `kubernetes`: the kustomize overlay deploy/k8s/overlays/$DEPLOY_ENVIRONMENT on
the cluster of the current kubeconfig (KUBECONFIG), through kubectl (kustomize is built in).

A deploy:
1. renders the overlay with the release's image pinned by digest (and its version as an
   annotation) and applies it: the Deployment starts a rolling update, one new pod at a time
   next to the old ones (maxUnavailable 0), so the old release serves until new pods are ready;
2. waits for the rollout, watching the new pods: a pull error, a crash loop, a service that
   says on /readyz it will never be ready, or the Deployment's progress deadline ends the wait;
3. then undoes the rollout itself (back to the revision that served before) and says why and
   what still serves. Nothing of a refused release ever received a request: the Service only
   sends traffic to ready pods.
Requests in flight during a switch are safe: a pod leaving the Service waits (preStop) until
the proxies have dropped it, then gunicorn finishes what it holds (deploy/k8s/base).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from deploy.docker_driver import PROBE, PROBE_FAILED, DeployError, Deployment, Release
from deploy.settings import Settings

MANIFESTS = Path(__file__).resolve().parent / "k8s"
# The pod template annotation that says which release a revision is (semver may hold '+',
# which a label value may not).
VERSION_ANNOTATION = "ml.deploy/version"
# The versions that served before it, oldest first (what a rollback walks back through).
HISTORY_ANNOTATION = "ml.deploy/history"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
# A new pod's container in one of these states will not become ready without a new release.
FATAL_WAITING = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CrashLoopBackOff",
                 "CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
# Seconds between looks at the rollout, and a last resort should the Deployment controller
# never report (it marks the rollout failed after the manifest's progressDeadlineSeconds).
POLL = 1.0
ROLLOUT_LIMIT = 900.0


class NotReady(Exception):
    pass


@dataclass(frozen=True)
class Target:
    deployment: str
    service: str | None
    namespace: str | None


class KubernetesDriver:
    name = "kubernetes"

    def __init__(self, settings: Settings, log=print):
        self.settings = settings
        self.log = log
        self.environment = settings.environment
        self.overlay = MANIFESTS / "overlays" / self.environment
        if not (self.overlay / "kustomization.yaml").is_file():
            known = sorted(p.name for p in (MANIFESTS / "overlays").iterdir() if p.is_dir())
            raise DeployError(f"no overlay for DEPLOY_ENVIRONMENT {self.environment!r} in "
                              f"{MANIFESTS / 'overlays'}; known: {', '.join(known)}")
        kubectl = shutil.which(settings.kubectl)
        if not kubectl:
            raise DeployError(f"kubectl ({settings.kubectl}) not found: install it or set KUBECTL")
        self.kubectl = kubectl

    # -- kubectl -----------------------------------------------------------------------------
    def run(self, *args: str, input: str | None = None, check: bool = True,
            namespace: str | None = None) -> subprocess.CompletedProcess:
        command = [self.kubectl, *(["--namespace", namespace] if namespace else []), *args]
        result = subprocess.run(command, input=input, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise DeployError(f"kubectl {' '.join(args[:2])} failed: "
                              f"{result.stderr.strip() or result.stdout.strip()}")
        return result

    def get(self, *args: str, namespace: str | None = None) -> dict:
        return json.loads(self.run("get", *args, "--output", "json", namespace=namespace).stdout)

    def render(self, release: Release | None = None, history: tuple[str, ...] = ()) -> str:
        """The overlay as manifests, with the release's image digest and version when given."""
        with tempfile.TemporaryDirectory(prefix="kustomize-") as workdir:
            # kustomize takes a base only by relative path.
            lines = ["apiVersion: kustomize.config.k8s.io/v1beta1", "kind: Kustomization",
                     "resources:", f"  - {os.path.relpath(self.overlay, workdir)}"]
            if self.settings.namespace:
                lines.append(f"namespace: {json.dumps(self.settings.namespace)}")
            if release:
                name, _, digest = release.reference.rpartition("@")
                if not name or not digest.startswith("sha256:"):
                    raise DeployError(f"{release.reference} is not an image by digest "
                                      "(REPOSITORY@sha256:...)")
                lines += ["images:", "  - name: model-service", f"    newName: {json.dumps(name)}",
                          f"    digest: {json.dumps(digest)}",
                          "commonAnnotations:",
                          f"  {VERSION_ANNOTATION}: {json.dumps(release.version)}",
                          f"  {HISTORY_ANNOTATION}: {json.dumps(','.join(history))}"]
            Path(workdir, "kustomization.yaml").write_text("\n".join(lines) + "\n")
            return self.run("kustomize", workdir).stdout

    # -- what is deployed --------------------------------------------------------------------
    def target(self) -> Target:
        """Where the overlay deploys: its Deployment, Service and namespace (None: the
        kubeconfig's), from a client-side dry run of the rendered manifests."""
        items = _json_objects(self.run("create", "--dry-run=client", "--output", "json",
                                       "--filename", "-", input=self.render()).stdout)
        deployments = [i["metadata"] for i in items if i["kind"] == "Deployment"]
        services = [i["metadata"]["name"] for i in items if i["kind"] == "Service"]
        if len(deployments) != 1:
            raise DeployError(f"{self.overlay} must hold one Deployment, not {len(deployments)}")
        return Target(deployments[0]["name"], services[0] if services else None,
                      deployments[0].get("namespace"))

    def deployment(self, target: Target) -> dict | None:
        found = self.run("get", "deployment", target.deployment, "--output", "json",
                         "--ignore-not-found", namespace=target.namespace).stdout
        return json.loads(found) if found.strip() else None

    def current(self) -> Deployment | None:
        target = self.target()
        deployment = self.deployment(target)
        return self._describe(target, deployment) if deployment else None

    def _describe(self, target: Target, deployment: dict) -> Deployment:
        template = deployment["spec"]["template"]
        status = deployment.get("status", {})
        where = (f"deployment/{target.deployment} in namespace {target.namespace or 'default'} "
                 f"({status.get('readyReplicas', 0)}/{deployment['spec'].get('replicas', 0)} "
                 f"pods ready)")
        url = "(no Service)"
        if target.service:
            service = self.get("service", target.service, namespace=target.namespace)["spec"]
            url = f"http://{service.get('clusterIP')}:{service['ports'][0]['port']}/"
        history = template["metadata"].get("annotations", {}).get(HISTORY_ANNOTATION, "")
        return Deployment(target.deployment, _version(template),
                          template["spec"]["containers"][0]["image"], where, url,
                          tuple(version for version in history.split(",") if version))

    # -- deploy ------------------------------------------------------------------------------
    def deploy(self, release: Release, history: tuple[str, ...] = ()) -> Deployment:
        started = time.monotonic()
        target = self.target()
        self._ensure_namespace(target.namespace)
        before = self.deployment(target)
        revision = before["metadata"]["annotations"][REVISION_ANNOTATION] if before else None
        serving = (f"{_version(before['spec']['template'])} "
                   f"({before['spec']['template']['spec']['containers'][0]['image']})"
                   if before else "nothing")
        manifests = self.render(release, history)
        self.log(f"applying {self.overlay.relative_to(MANIFESTS.parent.parent)} with "
                 f"{release.reference} to namespace {target.namespace or 'default'}")
        self.run("apply", "--filename", "-", input=manifests)
        try:
            self._wait(target, started)
        except NotReady as reason:
            self.log(f"{release.version} is not ready ({reason}); undoing the rollout")
            self._undo(target, revision, manifests)
            raise DeployError(f"{release.version} never became ready ({reason}); the rollout was "
                              f"undone; still serving in namespace "
                              f"{target.namespace or 'default'}: {serving}")
        except BaseException:  # interrupted, or the API went away: put the old release back
            self._undo(target, revision, manifests)
            raise
        self.log(f"deployment/{target.deployment} rolled out in "
                 f"{time.monotonic() - started:.1f} s")
        return self._describe(target, self.deployment(target))

    def _ensure_namespace(self, namespace: str | None) -> None:
        if namespace and not self.run("get", "namespace", namespace, "--ignore-not-found",
                                      "--output", "name").stdout.strip():
            self.run("create", "namespace", namespace)
            self.log(f"namespace {namespace} created")

    def _undo(self, target: Target, revision: str | None, manifests: str) -> None:
        if revision is None:  # the first deploy: nothing served before it, nothing is left
            self.run("delete", "--filename", "-", "--ignore-not-found", "--wait=false",
                     input=manifests)
            return
        self.run("rollout", "undo", f"deployment/{target.deployment}",
                 f"--to-revision={revision}", namespace=target.namespace)
        try:
            self._wait(target, time.monotonic(), judge=False)
        except NotReady as reason:
            raise DeployError(f"the rollout was undone to revision {revision}, but it did not "
                              f"complete: {reason}")

    def _wait(self, target: Target, started: float, judge: bool = True) -> None:
        """Until every pod runs the Deployment's current template and is available. With
        `judge`, give up early on new pods that will never become ready."""
        while time.monotonic() - started < ROLLOUT_LIMIT:
            deployment = self.deployment(target)
            if _rolled_out(deployment):
                return
            progressing = _condition(deployment, "Progressing")
            if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
                raise NotReady(f"no progress for {deployment['spec']['progressDeadlineSeconds']}"
                               f" s: {progressing.get('message')}")
            if judge:
                for pod in self._new_pods(target, deployment):
                    self._judge(target, pod)
            time.sleep(POLL)
        raise NotReady(f"not rolled out after {ROLLOUT_LIMIT:g} s")

    def _new_pods(self, target: Target, deployment: dict) -> list[dict]:
        """The pods of the ReplicaSet that holds the Deployment's current template."""
        revision = deployment["metadata"].get("annotations", {}).get(REVISION_ANNOTATION)
        selector = ",".join(f"{k}={v}" for k, v in
                            deployment["spec"]["selector"]["matchLabels"].items())
        items = self.get("replicasets,pods", "--selector", selector,
                         namespace=target.namespace)["items"]
        hashes = {rs["metadata"]["labels"].get("pod-template-hash") for rs in items
                  if rs["kind"] == "ReplicaSet"
                  and rs["metadata"].get("annotations", {}).get(REVISION_ANNOTATION) == revision}
        return [pod for pod in items if pod["kind"] == "Pod"
                and pod["metadata"]["labels"].get("pod-template-hash") in hashes]

    def _judge(self, target: Target, pod: dict) -> None:
        """Raise NotReady when this new pod shows it will not become ready."""
        name = pod["metadata"]["name"]
        ports = {c["name"]: c.get("ports", []) for c in pod["spec"]["containers"]}
        for container in pod.get("status", {}).get("containerStatuses", []):
            waiting = container.get("state", {}).get("waiting") or {}
            if waiting.get("reason") in FATAL_WAITING:
                raise NotReady(f"pod {name}: {waiting['reason']}: {waiting.get('message', '')}"
                               .rstrip(": "))
            if container.get("state", {}).get("running") and not container.get("ready") \
                    and ports[container["name"]]:
                # Ask the service itself, as the Docker target does: /readyz says "failed"
                # when its model did not load, which no wait would change.
                port = ports[container["name"]][0]["containerPort"]
                probe = self.run("exec", name, "--container", container["name"], "--",
                                 "python3", "-c", PROBE % {"port": port, "failed": PROBE_FAILED},
                                 check=False, namespace=target.namespace)
                if probe.returncode == PROBE_FAILED:
                    raise NotReady(f"pod {name} says it cannot become ready: "
                                   f"{probe.stdout.strip()}")


def _json_objects(text: str) -> list[dict]:
    """The objects of kubectl's JSON output for several manifests (one after the other)."""
    decoder, objects, position = json.JSONDecoder(), [], 0
    while text[position:].strip():
        found, position = decoder.raw_decode(text, len(text) - len(text[position:].lstrip()))
        objects.append(found)
    return objects


def _version(template: dict) -> str:
    return template["metadata"].get("annotations", {}).get(VERSION_ANNOTATION, "unknown")


def _condition(deployment: dict, kind: str) -> dict | None:
    for condition in deployment.get("status", {}).get("conditions", []):
        if condition.get("type") == kind:
            return condition
    return None


def _rolled_out(deployment: dict) -> bool:
    """kubectl rollout status's test: the controller saw the latest spec, every replica runs
    the new template, no old one is left, and all are available."""
    status, wanted = deployment.get("status", {}), deployment["spec"].get("replicas", 1)
    if status.get("observedGeneration", 0) < deployment["metadata"]["generation"]:
        return False
    updated = status.get("updatedReplicas", 0)
    return (updated >= wanted and status.get("replicas", 0) <= updated
            and status.get("availableReplicas", 0) >= updated)
