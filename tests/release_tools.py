"""What the release tests share (test_container.py on the Docker target, test_kubernetes.py on a
cluster): the Makefile targets run as a user runs them, releases built once, the story every
deploy target must tell, a client that counts failed requests, and the clean-up of a test's
registry repository and images."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from deploy.docker_driver import SERVICE_LABEL
from deploy.registry import Registry

REPO = Path(__file__).resolve().parents[1]


def unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this fails instead of skipping)")
    pytest.skip(f"{reason}; `make provision` sets one up")


def make(target: str, env: dict, **variables) -> subprocess.CompletedProcess:
    started = time.monotonic()
    result = subprocess.run(["make", target, *(f"{k}={v}" for k, v in variables.items())],
                            cwd=REPO, capture_output=True, text=True, env=env)
    result.seconds = time.monotonic() - started
    print(f"make {target} {variables}: exit {result.returncode} in {result.seconds:.1f} s")
    return result


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"{result.args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def release_env(**variables) -> dict:
    """The environment for the Makefile's targets with this test's own image name (a new
    repository in REGISTRY), nothing of an outer `make test VERSION=...` leaking in."""
    registry = variables.get("REGISTRY") or os.environ.get("REGISTRY", "127.0.0.1:5000")
    try:
        requests.get(f"http://{registry}/v2/", timeout=5).raise_for_status()
    except requests.RequestException as error:
        unavailable(f"no registry at {registry} ({error})")
    env = {**os.environ, "IMAGE": f"test-{uuid.uuid4().hex[:8]}/model-service",
           "MODEL_NAME": "model", **variables, "REGISTRY": registry}
    for name in ("VERSION", "CHAMPION", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES", "MAKELEVEL"):
        env.pop(name, None)
    return env


@contextlib.contextmanager
def built_releases(env: dict, model_dir: Path):
    """Build 1.0.0 and 2.0.0 (the model) and a broken 2.1.0 (a corrupt model) with `make
    build`; yield {version: local image}."""
    workdir = REPO / f".test-build-{uuid.uuid4().hex[:8]}"
    try:
        good = workdir / "model"
        shutil.copytree(model_dir, good)
        broken = workdir / "broken"
        shutil.copytree(model_dir, broken)
        (broken / "model.tflite").write_bytes(b"not a model")
        built = {}
        for version, directory in (("1.0.0", good), ("2.0.0", good), ("2.1.0", broken)):
            result = ok(make("build", env, VERSION=version,
                             MODEL_DIR=str(directory.relative_to(REPO))))
            assert f"built {env['IMAGE']}:{version}, {env['IMAGE']}:sha-" in result
            built[version] = f"{env['IMAGE']}:{version}"
        yield built
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def deployed(engine, env: dict, all: bool = False) -> list:
    """The containers of the test's service on the Docker target."""
    service = env["IMAGE"].replace("/", "-")
    return engine.containers.list(all=all, filters={"label": f"{SERVICE_LABEL}={service}"})


def remove_releases(engine, env: dict) -> None:
    """Delete the test's repository from the registry and its images from the engine."""
    registry = Registry(env["REGISTRY"])
    for tag in registry.tags(env["IMAGE"]):
        digest = registry.digest(env["IMAGE"], tag)
        if digest:
            registry.delete(env["IMAGE"], digest)
    remove_images(engine, env["IMAGE"])


def remove_images(engine, name: str) -> None:
    """Remove from the engine every image whose tag or digest reference holds `name`."""
    import docker.errors
    for image in engine.images.list():
        for reference in image.tags + (image.attrs.get("RepoDigests") or []):
            if name in reference:
                try:
                    engine.images.remove(reference, force=True)
                except docker.errors.NotFound:
                    pass  # gone with another reference to the same image


class Traffic:
    """Sends predict requests (a new connection each) to `url` from two threads until stopped."""

    def __init__(self, url: str, rows: list):
        self.url = f"{url.rstrip('/')}/v1/models/model:predict"
        self.body = {"instances": rows}
        self.sent = 0
        self.failures: list[str] = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.run) for _ in range(2)]

    def run(self):
        while not self.stopping.is_set():
            try:
                response = requests.post(self.url, json=self.body, timeout=10)
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code} {response.text[:100]}")
            except requests.RequestException as error:
                self.failures.append(repr(error)[:200])
            self.sent += 1

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for thread in self.threads:
            thread.join()


def release_story(env: dict, rows: list, url: Callable[[], str],
                  serving: Callable[[str], None],
                  settled: Callable[[], None] = lambda: time.sleep(0.5)) -> dict:
    """What every deploy target must do, run as a user runs it: deploy 1.0.0, switch to 2.0.0,
    refuse the broken 2.1.0 (2.0.0 serving on), roll back to the release before and forward to
    2.0.0 by name, refuse an unknown version. A client sends requests to `url()` through every
    switch until `settled()` returns, and none may fail; `serving(version)` checks what serves
    after each step. Returns each step's result for the target's own checks."""
    def switch(target: str, **variables) -> subprocess.CompletedProcess:
        with Traffic(url(), rows) as traffic:
            time.sleep(0.5)
            result = make(target, env, **variables)
            settled()
        print(f"  {traffic.sent} requests during the switch, {len(traffic.failures)} failed")
        assert traffic.sent > 0
        assert traffic.failures == [], traffic.failures[:5]
        return result

    steps = {"first": ok(make("deploy", env, VERSION="1.0.0"))}
    serving("1.0.0")

    steps["switch"] = ok(switch("deploy", VERSION="2.0.0"))
    serving("2.0.0")

    steps["broken"] = broken = switch("deploy", VERSION="2.1.0")
    assert broken.returncode != 0
    assert "2.1.0 never became ready" in broken.stderr
    # refused on the service's own word, not after a timeout
    assert "says it cannot become ready" in broken.stderr and "model.tflite" in broken.stderr
    assert "still serving" in broken.stderr and "2.0.0" in broken.stderr
    serving("2.0.0")

    steps["rollback"] = ok(switch("rollback"))
    assert "1.0.0" in steps["rollback"]
    serving("1.0.0")

    steps["rollback_named"] = ok(switch("rollback", VERSION="2.0.0"))
    serving("2.0.0")

    unknown = make("rollback", env, VERSION="9.9.9")
    assert unknown.returncode != 0
    # the releases in semantic-version order
    assert "unknown version 9.9.9; releases: 1.0.0, 2.0.0, 2.1.0" in unknown.stderr
    serving("2.0.0")
    return steps
