"""Releases on a real Kubernetes cluster (DEPLOY_TARGET=kubernetes), as a user runs them.

The cluster comes from .ci/cluster: the local single-node one (started when needed, stopped
again if this module started it) or a kind cluster (GitHub), with the registry its nodes pull
from. The images are built with `make
build`, pushed to the registry, and the cluster pulls them from there by digest. The test
deploys v1, switches to v2, is refused a broken v2.1.0, rolls back to v1 and forward to v2 by
name, with a client sending requests through the Service the whole time (until the old pods are
gone), and checks after each step which image digest the Service's ready endpoints run. With
CANARY=1, a release that serves as well is promoted, and one that never gets ready and one that
predicts differently (an untrained model) are aborted, with a client sending requests
throughout.
Everything lives in namespaces and a registry repository of its own, removed at the end.
Skips only when no cluster can exist here and CI is not set.
"""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import time
import uuid

import pytest

from deploy.docker_driver import Release
from deploy.kubernetes_driver import MANIFESTS, KubernetesDriver
from deploy.registry import PRODUCTION_TAG, Registry
from deploy.settings import Settings
from conftest import DATA, SCHEMA
from release_tools import REPO, Traffic, built_releases, make, ok, release_env, release_story, \
    remove_releases, unavailable

pytestmark = [pytest.mark.kubernetes, pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster():
    """KUBECONFIG and KUBECTL of a cluster the tests may deploy to."""
    result = subprocess.run([str(REPO / ".ci" / "cluster"), "up"], capture_output=True,
                            text=True)
    if result.returncode == 3:
        unavailable(result.stderr.strip())
    assert result.returncode == 0, result.stderr
    found = dict(line.split("=", 1) for line in result.stdout.split())
    yield found
    if found.get("STARTED"):
        subprocess.run([str(REPO / ".ci" / "cluster"), "down"], check=True)


def kubectl(env: dict, *args: str, check: bool = True) -> str:
    return subprocess.run([env["KUBECTL"], *args], env=env, capture_output=True, text=True,
                          check=check).stdout


@pytest.fixture(scope="module")
def k8s_env(cluster):
    import docker
    env = release_env(DEPLOY_TARGET="kubernetes", DEPLOY_ENVIRONMENT="production",
                      KUBE_NAMESPACE=f"test-{uuid.uuid4().hex[:8]}", **cluster)
    yield env
    kubectl(env, "delete", "namespace", env["KUBE_NAMESPACE"], "--ignore-not-found",
            "--wait=false")
    remove_releases(docker.from_env(), env)


@pytest.fixture(scope="module")
def releases(k8s_env, model_dir):
    with built_releases(k8s_env, model_dir) as built:
        for version in built:
            ok(make("push", k8s_env, VERSION=version))
        yield built


def serving_digests(env: dict) -> set[str]:
    """The image digests that the Service's ready endpoints (what takes requests) run."""
    namespace = ["--namespace", env["KUBE_NAMESPACE"]]
    slices = json.loads(kubectl(env, "get", "endpointslices", *namespace, "--selector",
                                "kubernetes.io/service-name=model-service", "--output", "json"))
    ready = {e["targetRef"]["name"] for s in slices["items"] for e in s.get("endpoints") or []
             if e["conditions"].get("ready")}
    pods = json.loads(kubectl(env, "get", "pods", *namespace, "--output", "json"))["items"]
    return {status["imageID"].rpartition("@")[2] for pod in pods
            if pod["metadata"]["name"] in ready for status in pod["status"]["containerStatuses"]}


def old_pods_gone(env: dict, timeout: float = 90) -> None:
    """Wait until no pod of the Deployment is terminating (the last ones to stop serving)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = json.loads(kubectl(env, "get", "pods", "--namespace", env["KUBE_NAMESPACE"],
                                  "--output", "json"))["items"]
        if not any(pod["metadata"].get("deletionTimestamp") for pod in pods):
            return
        time.sleep(0.5)
    raise AssertionError(f"pods still terminating after {timeout} s")


def reachable(env: dict) -> str:
    """A URL of the Service for a client on this machine: its ClusterIP where the host routes
    Service addresses (the local cluster), else a NodePort Service with the same selector that
    kind maps to 127.0.0.1:NODE_PORT (.ci/cluster)."""
    if not env.get("NODE_PORT"):
        service = json.loads(kubectl(env, "get", "service", "model-service", "--namespace",
                                     env["KUBE_NAMESPACE"], "--output", "json"))["spec"]
        return f"http://{service['clusterIP']}:{service['ports'][0]['port']}/"
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "model-service-nodeport", "namespace": env["KUBE_NAMESPACE"]},
               "spec": {"type": "NodePort", "selector": {"app.kubernetes.io/name": "model-service"},
                        "ports": [{"port": 8501, "targetPort": "http",
                                   "nodePort": int(env["NODE_PORT"])}]}}
    subprocess.run([env["KUBECTL"], "apply", "--filename", "-"], input=json.dumps(service),
                   env=env, capture_output=True, text=True, check=True)
    return f"http://127.0.0.1:{env['NODE_PORT']}/"


def test_deploy_switch_broken_release_and_rollbacks(k8s_env, releases, model_dir):
    env, registry = k8s_env, Registry(k8s_env["REGISTRY"])
    rows = [json.loads((model_dir / "manifest.json").read_text())["example"]]

    def serving(version: str) -> None:
        digest = registry.digest(env["IMAGE"], version)
        reference = f"{env['REGISTRY']}/{env['IMAGE']}@{digest}"
        status = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-m", "deploy",
                                 "status", "--reference"], cwd=REPO, env=env,
                                capture_output=True, text=True, check=True).stdout.strip()
        assert status == reference
        assert serving_digests(env) == {digest}
        assert registry.digest(env["IMAGE"], PRODUCTION_TAG) == digest

    # The old pods serve (and could fail requests) until they are gone.
    steps = release_story(env, rows, lambda: reachable(env), serving, lambda: old_pods_gone(env))
    assert f"namespace {env['KUBE_NAMESPACE']} created" in steps["first"]
    assert "the rollout was undone" in steps["broken"].stderr
    assert "rollback: model-service 1.0.0" in steps["rollback"]


def test_a_broken_first_release_leaves_nothing_behind(k8s_env, releases):
    env = {**k8s_env, "KUBE_NAMESPACE": f"{k8s_env['KUBE_NAMESPACE']}-first"}
    try:
        refused = make("deploy", env, VERSION="2.1.0")
        assert refused.returncode != 0
        assert "still serving in namespace" in refused.stderr and ": nothing" in refused.stderr
        left = kubectl(env, "get", "deployments,services,hpa,pdb", "--namespace",
                       env["KUBE_NAMESPACE"], "--output", "name")
        assert left.strip() == ""
    finally:
        kubectl(env, "delete", "namespace", env["KUBE_NAMESPACE"], "--ignore-not-found",
                "--wait=false")


@pytest.mark.parametrize("environment", sorted(p.name for p in (MANIFESTS / "overlays").iterdir()))
def test_every_overlay_passes_the_api_servers_strict_validation(k8s_env, environment):
    """What the cluster itself says of each overlay, as the driver renders it (digest, version
    annotation): a server-side dry run with strict field validation, so no unknown or
    duplicate field passes."""
    namespace = f"{k8s_env['KUBE_NAMESPACE']}-{environment}"
    settings = Settings(environment=environment, namespace=namespace,
                        kubectl=k8s_env["KUBECTL"])
    manifests = KubernetesDriver(settings).render(
        Release("1.0.0", f"{k8s_env['REGISTRY']}/{k8s_env['IMAGE']}@sha256:{'0' * 64}"))
    kubectl(k8s_env, "create", "namespace", namespace)
    try:
        result = subprocess.run(
            [k8s_env["KUBECTL"], "apply", "--dry-run=server", "--validate=strict",
             "--filename", "-"], input=manifests, env=k8s_env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert result.stderr == "", result.stderr  # no warning either (deprecated APIs)
        assert "deployment.apps/model-service created (server dry run)" in result.stdout
    finally:
        kubectl(k8s_env, "delete", "namespace", namespace, "--wait=false")


@pytest.fixture(scope="module")
def untrained_release(k8s_env, releases, untrained_model_dir):
    """2.2.0: the untrained model (its initial weights), a release that becomes ready and
    answers every request, but predicts differently."""
    workdir = REPO / f".test-build-{uuid.uuid4().hex[:8]}"
    try:
        shutil.copytree(untrained_model_dir, workdir)
        ok(make("build", k8s_env, VERSION="2.2.0", MODEL_DIR=str(workdir.relative_to(REPO))))
        ok(make("push", k8s_env, VERSION="2.2.0"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return "2.2.0"


def data_rows(count: int) -> list[dict]:
    """Rows spread over the data set, as request instances: a realistic mix of predictions."""
    features = json.loads(SCHEMA.read_text())["features"]
    convert = {"float": float, "int": lambda v: int(float(v)), "category": str}
    with DATA.open(newline="") as f:
        rows = list(csv.DictReader(f))
    rows = rows[::len(rows) // count][:count]
    return [{feature["name"]: convert[feature["dtype"]](row[feature["name"]])
             if row[feature["name"]] != "" else None for feature in features} for row in rows]


def test_a_canary_promotes_a_good_release_and_aborts_bad_ones(k8s_env, releases,
                                                              untrained_release, tmp_path):
    summary = tmp_path / "summary.md"  # a GitHub job's summary
    env = {**k8s_env, "KUBE_NAMESPACE": f"{k8s_env['KUBE_NAMESPACE']}-canary",
           "GITHUB_STEP_SUMMARY": str(summary)}
    registry = Registry(env["REGISTRY"])
    canary = {"CANARY": "1", "CANARY_WINDOW": "30", "CANARY_REQUESTS": "100"}
    # kind maps one NodePort to the runner: the other test's Service gives it up.
    kubectl(env, "delete", "service", "model-service-nodeport", "--namespace",
            k8s_env["KUBE_NAMESPACE"], "--ignore-not-found")
    try:
        first = ok(make("deploy", env, VERSION="1.0.0", **canary))
        assert "canary: no release serves yet, nothing to compare with" in first
        with Traffic(reachable(env), data_rows(20)) as traffic:
            time.sleep(0.5)
            steps = {}
            for version in ("2.0.0", "2.1.0", untrained_release):
                steps[version] = make("deploy", env, VERSION=version, **canary)
                print(steps[version].stdout, steps[version].stderr)
                old_pods_gone(env)
        print(f"  {traffic.sent} requests through the canaries, {len(traffic.failures)} failed")
        promoted = ok(steps["2.0.0"])
        assert "canary: 1 pod(s) of 2.0.0 next to " in promoted
        assert "### canary analysis of 2.0.0 against 1.0.0: promote\n\nevery check passed" \
            in promoted
        assert "| 5xx share | 0.00% (0 of " in promoted and "| latency p95 |" in promoted
        assert "canary: 2.0.0 promoted: the stable pods roll out to it" in promoted
        broken = steps["2.1.0"]
        assert broken.returncode != 0, broken.stdout + broken.stderr
        assert "canary aborted: 2.1.0 never became ready (pod model-service-canary-" \
            in broken.stderr
        assert "the canary of 2.1.0 was removed; still serving in namespace " in broken.stderr
        wrong = steps[untrained_release]
        assert wrong.returncode != 0, wrong.stdout + wrong.stderr
        assert "### canary analysis of 2.2.0 against 2.0.0: abort" in wrong.stdout
        assert "canary aborted: predicted labels: canary " in wrong.stderr \
            or "canary aborted: prediction values: canary " in wrong.stderr
        assert "the canary of 2.2.0 was removed; still serving in namespace " in wrong.stderr
        reports = summary.read_text()
        assert reports.startswith("### canary analysis of 2.0.0 against 1.0.0: promote\n")
        assert "\n### canary analysis of 2.2.0 against 2.0.0: abort\n" in reports
        # The client saw no failure: not from the machinery, nor from the bad canaries (one
        # never took a request, the other answers every request, wrongly).
        assert traffic.sent > 0 and traffic.failures == [], traffic.failures[:5]
        digest = registry.digest(env["IMAGE"], "2.0.0")
        assert serving_digests(env) == {digest}
        assert registry.digest(env["IMAGE"], PRODUCTION_TAG) == digest
        assert kubectl(env, "get", "deployments", "--namespace", env["KUBE_NAMESPACE"],
                       "--output", "name").split() == ["deployment.apps/model-service"]
    finally:
        kubectl(env, "delete", "namespace", env["KUBE_NAMESPACE"], "--ignore-not-found",
                "--wait=false")
