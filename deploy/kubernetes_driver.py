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

With CANARY=1 and a release already serving, the new release first runs as a canary: a
Deployment `<name>-canary` of CANARY_REPLICAS pods (default 1) with the same labels plus a track
label, so the Service sends them their share of the connections (by pod count). deploy/canary.py
compares their /metrics with the stable pods' over CANARY_WINDOW seconds; the release is then
promoted (the rollout above) or aborted (the stable pods untouched), and the canary removed.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from deploy import canary
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
# The canary's pods carry this label too (its Deployment selects on it); the stable ones do not.
TRACK_LABEL = "ml.deploy/track"
# Seconds between two looks at the pods' metrics during the canary analysis.
CANARY_LOOK = 10.0


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
        try:
            if self.settings.canary:
                self._canary(target, release, manifests, before, serving)
            self._roll_out(target, release, manifests, revision, serving)
        finally:
            if self.settings.canary:
                self.run("delete", "deployment", _canary_name(target), "--ignore-not-found",
                         "--wait=false", namespace=target.namespace)
        self.log(f"deployment/{target.deployment} rolled out in "
                 f"{time.monotonic() - started:.1f} s")
        return self._describe(target, self.deployment(target))

    def _roll_out(self, target: Target, release: Release, manifests: str, revision: str | None,
                  serving: str) -> None:
        self.log(f"applying {self.overlay.relative_to(MANIFESTS.parent.parent)} with "
                 f"{release.reference} to namespace {target.namespace or 'default'}")
        self.run("apply", "--filename", "-", input=manifests)
        try:
            self._wait(target, time.monotonic())
        except NotReady as reason:
            self.log(f"{release.version} is not ready ({reason}); undoing the rollout")
            self._undo(target, revision, manifests)
            raise DeployError(f"{release.version} never became ready ({reason}); the rollout was "
                              f"undone; still serving in namespace "
                              f"{target.namespace or 'default'}: {serving}")
        except BaseException:  # interrupted, or the API went away: put the old release back
            self._undo(target, revision, manifests)
            raise

    # -- canary ------------------------------------------------------------------------------
    def _canary(self, target: Target, release: Release, manifests: str, before: dict | None,
                serving: str) -> None:
        """Run the release as a canary next to the stable pods and judge it; return to promote
        it, raise DeployError to abort (the caller removes the canary either way)."""
        if before is None:
            self.log("canary: no release serves yet, nothing to compare with: a plain rollout")
            return
        if before["spec"]["template"]["spec"]["containers"][0]["image"] == release.reference:
            self.log(f"canary: {release.version} already serves: no canary needed")
            return
        rendered = next(item for item in _json_objects(self.run(
            "create", "--dry-run=client", "--output", "json", "--filename", "-",
            input=manifests).stdout) if item["kind"] == "Deployment")
        replicas = self.settings.canary_replicas
        self.run("apply", "--filename", "-",
                 input=json.dumps(_canary_deployment(rendered, _canary_name(target), replicas)))
        stable_pods = before.get("status", {}).get("readyReplicas", 0)
        self.log(f"canary: {replicas} pod(s) of {release.version} next to {stable_pods} stable "
                 f"pod(s): about {replicas / (replicas + stable_pods):.0%} of the Service's "
                 f"connections")
        aborted = f"the canary of {release.version} was removed; still serving in namespace " \
                  f"{target.namespace or 'default'}: {serving}"
        try:
            self._wait(Target(_canary_name(target), None, target.namespace), time.monotonic())
        except NotReady as reason:
            raise DeployError(f"canary aborted: {release.version} never became ready "
                              f"({reason}); {aborted}")
        verdict = self._analyse(before)
        title = (f"canary analysis of {release.version} against "
                 f"{_version(before['spec']['template'])}")
        report = canary.report(verdict, title)
        self.log(report)
        if os.environ.get("GITHUB_STEP_SUMMARY"):
            with open(os.environ["GITHUB_STEP_SUMMARY"], "a") as summary:
                summary.write(report + "\n")
        if verdict.decision != "promote":
            raise DeployError(f"canary aborted: {verdict.reason}; {aborted}")
        self.log(f"canary: {release.version} promoted: the stable pods roll out to it")

    def _analyse(self, stable: dict) -> canary.Verdict:
        """Look at every ready pod's metrics over the window (CANARY_WINDOW seconds)."""
        selector = ",".join(f"{k}={v}" for k, v in
                            stable["spec"]["selector"]["matchLabels"].items())
        namespace = stable["metadata"]["namespace"]
        looks = max(1, math.ceil(self.settings.canary_window / CANARY_LOOK))
        analysis = canary.Analysis(canary.Thresholds(min_requests=self.settings.canary_requests),
                                   looks)
        analysis.baseline(self._scrape(selector, namespace))
        for look in range(1, looks + 1):
            time.sleep(CANARY_LOOK)
            verdict = analysis.look(self._scrape(selector, namespace), final=look == looks)
            self.log(f"canary: look {look}/{looks}: canary {verdict.canary.requests} requests "
                     f"({verdict.canary.errors} 5xx), stable {verdict.stable.requests} "
                     f"({verdict.stable.errors} 5xx): {verdict.decision}")
            if verdict.decision != "continue":
                return verdict
        raise AssertionError("the last look always decides")

    def _scrape(self, selector: str, namespace: str) -> dict[str, tuple[str, str]]:
        """{pod: (track, its /metrics)} of the ready pods behind the Service, through the API
        server's pod proxy (pods are not always reachable from where the deploy runs)."""
        found = {}
        for pod in self.get("pods", "--selector", selector, namespace=namespace)["items"]:
            ready = any(c["type"] == "Ready" and c["status"] == "True"
                        for c in pod.get("status", {}).get("conditions", []))
            if not ready or pod["metadata"].get("deletionTimestamp"):
                continue
            name, port = pod["metadata"]["name"], \
                pod["spec"]["containers"][0]["ports"][0]["containerPort"]
            scraped = self.run("get", "--raw",
                               f"/api/v1/namespaces/{namespace}/pods/{name}:{port}/proxy/metrics",
                               check=False)
            if scraped.returncode == 0:  # a pod that just went away counts at the next look
                track = pod["metadata"]["labels"].get(TRACK_LABEL, canary.STABLE)
                found[name] = (track, scraped.stdout)
        return found

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
        """The pods of the ReplicaSet that holds the Deployment's current template (the
        canary's ReplicaSet matches the stable Deployment's selector too: ownership decides)."""
        revision = deployment["metadata"].get("annotations", {}).get(REVISION_ANNOTATION)
        selector = ",".join(f"{k}={v}" for k, v in
                            deployment["spec"]["selector"]["matchLabels"].items())
        items = self.get("replicasets,pods", "--selector", selector,
                         namespace=target.namespace)["items"]
        uid = deployment["metadata"]["uid"]
        hashes = {rs["metadata"]["labels"].get("pod-template-hash") for rs in items
                  if rs["kind"] == "ReplicaSet"
                  and rs["metadata"].get("annotations", {}).get(REVISION_ANNOTATION) == revision
                  and any(o.get("uid") == uid for o in rs["metadata"].get("ownerReferences", []))}
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


def _canary_name(target: Target) -> str:
    return f"{target.deployment}-canary"


def _canary_deployment(rendered: dict, name: str, replicas: int) -> dict:
    """The release's Deployment as a canary: its own name and replica count, and the track label
    on its selector and pods (which keep the labels the Service selects on)."""
    track = {TRACK_LABEL: canary.CANARY}
    spec = rendered["spec"]
    return {**rendered,
            "metadata": {**rendered["metadata"], "name": name,
                         "labels": {**rendered["metadata"].get("labels", {}), **track}},
            "spec": {**spec, "replicas": replicas,
                     "selector": {"matchLabels": {**spec["selector"]["matchLabels"], **track}},
                     "template": {**spec["template"], "metadata": {
                         **spec["template"]["metadata"],
                         "labels": {**spec["template"]["metadata"]["labels"], **track}}}}}


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
