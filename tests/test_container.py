"""The image and the release workflow on a real Docker engine and a real registry.

Runs the Makefile targets as a user would: build, smoke, push, deploy v1, deploy v2, deploy
a broken image (never ready) while v2 keeps serving, roll back with and without VERSION,
with a client sending requests through every switch. Everything it creates has a unique
name (image, port, container labels) and is removed at the end; the image is built once.
Skips only when no engine is reachable and CI is not set.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid

import pytest
import requests

from deploy.docker_driver import (IMAGE_LABEL, VERSION_LABEL, DeployError,
                                  DockerDriver, Release)
from deploy.image import ImageError, extract_model, sizes
from deploy.registry import PRODUCTION_TAG, Registry
from deploy.settings import Settings
from deploy.smoke import free_port

import release_tools
from release_tools import REPO, deployed, make, ok

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# What the image may add to its base (docker history), uncompressed.
MAX_ADDED_BYTES = 150 * 1000 * 1000


def test_image_adds_little_to_its_base_and_says_what_is_inside(engine, images, model_dir):
    image = engine.images.get(images["1.0.0"])
    total, added = sizes(images["1.0.0"], engine)
    print(f"image {total / 1e6:.1f} MB, of which {added / 1e6:.1f} MB over its base")
    assert 0 < added <= MAX_ADDED_BYTES
    if os.environ.get("CI"):
        # As on a fresh runner (`make provision` makes this machine's engine like one), the
        # build pulled the base into BuildKit's cache, not into the engine's image store.
        import docker.errors
        with pytest.raises(docker.errors.ImageNotFound):
            engine.images.get(image.labels["org.opencontainers.image.base.name"])
    manifest = json.loads((model_dir / "manifest.json").read_text())
    labels = image.labels
    assert labels["ml.model.sha256"] == manifest["files"]["model.tflite"]["sha256"]
    assert labels["ml.model.version"] == manifest["version"]
    assert labels["ml.model.primary-metric"] == manifest["model"]["primary_metric"]
    assert float(labels["ml.model.primary-metric-value"]) == \
        manifest["model"]["primary_metric_value"]
    assert labels["org.opencontainers.image.version"] == "1.0.0"
    assert labels["org.opencontainers.image.revision"] != "unknown"
    assert image.attrs["Config"]["User"] not in ("", "0", "root")
    assert "8501/tcp" in image.attrs["Config"]["ExposedPorts"]
    assert image.attrs["Config"]["Healthcheck"]["Test"][0] == "CMD"


def test_image_has_no_tensorflow_and_no_pip(engine, images):
    output = engine.containers.run(
        images["1.0.0"], ["python3", "-c", "import importlib.util as u; "
                          "print([m for m in ('tensorflow', 'keras', 'pip') if u.find_spec(m)])"],
        network_mode="host", remove=True)
    assert output.strip() == b"[]"


def containers_of(engine, image: str) -> set[str]:
    """The containers made from `image`, running or not: others on a shared engine come and go."""
    return {c.id for c in engine.containers.list(all=True, filters={"ancestor": image})}


def test_the_model_comes_out_of_an_image_without_running_it(engine, images, model_dir, tmp_path):
    before = containers_of(engine, images["1.0.0"])
    extracted = extract_model(images["1.0.0"], tmp_path / "champion", engine)
    for name in ("model.tflite", "manifest.json"):
        assert (extracted / name).read_bytes() == (model_dir / name).read_bytes()
    assert containers_of(engine, images["1.0.0"]) == before
    with pytest.raises(ImageError, match="neither local nor pullable"):
        extract_model(f"{images['1.0.0']}-missing", tmp_path / "none", engine)


def test_the_gate_takes_its_champion_from_an_image(engine, images, release_env, model_dir,
                                                   tmp_path):
    candidate = shutil.copytree(model_dir, tmp_path / "candidate")
    before = containers_of(engine, images["1.0.0"])
    output = ok(make("evaluate", release_env, MODEL_DIR=str(candidate),
                     CHAMPION=images["1.0.0"]))
    assert f"against {images['1.0.0']}" in output
    champion = json.loads((candidate / "evaluation.json").read_text())["champion"]
    assert champion["reference"] == images["1.0.0"]
    # The image holds the very same model: the two score alike on every test row.
    assert champion["comparison"]["difference"] == 0
    assert containers_of(engine, images["1.0.0"]) == before
    missing = make("evaluate", release_env, MODEL_DIR=str(candidate),
                   CHAMPION=f"{images['1.0.0']}-missing")
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert "neither local nor pullable" in missing.stderr


def test_only_a_missing_tag_means_no_champion(images, release_env, model_dir, tmp_path):
    candidate = shutil.copytree(model_dir, tmp_path / "candidate")
    absent = f"{release_env['REGISTRY']}/{release_env['IMAGE']}:no-such-tag"
    result = make("evaluate", release_env, MODEL_DIR=str(candidate), CHAMPION=absent)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    assert "manifest unknown" in result.stdout and "thresholds only" in result.stdout
    assert json.loads((candidate / "evaluation.json").read_text())["champion"] is None
    # any other failure stops the gate with the reason: here, a registry that is not there
    unreachable = make("evaluate", release_env, MODEL_DIR=str(candidate),
                       CHAMPION=f"127.0.0.1:{free_port()}/model-service:production")
    assert unreachable.returncode == 2, unreachable.stdout + unreachable.stderr
    assert "connection refused" in unreachable.stderr


def test_smoke_passes_on_a_good_image(images, release_env):
    output = ok(make("smoke", release_env, VERSION="1.0.0"))
    assert "smoke test of" in output and "passed" in output


def test_smoke_fails_loudly_on_a_broken_image(images, release_env):
    result = make("smoke", release_env, VERSION="2.1.0")
    assert result.returncode != 0
    assert "smoke: error: the model in" in result.stderr
    assert "does not load" in result.stderr


def test_push_gives_immutable_version_tags(engine, images, release_env):
    for version in ("1.0.0", "2.0.0", "2.1.0"):
        assert f"pushed {release_env['REGISTRY']}/{release_env['IMAGE']}:{version}" in \
            ok(make("push", release_env, VERSION=version))
    tags = Registry(release_env["REGISTRY"]).tags(release_env["IMAGE"])
    assert {"1.0.0", "2.0.0", "2.1.0"} <= set(tags)
    assert any(tag.startswith("sha-") for tag in tags)
    # Pushing the same image again is fine; another image under a released version is not.
    ok(make("push", release_env, VERSION="1.0.0"))
    v1 = engine.images.get(images["1.0.0"])
    engine.images.get(images["2.0.0"]).tag(release_env["IMAGE"], "1.0.0")
    try:
        refused = make("push", release_env, VERSION="1.0.0")
    finally:
        v1.tag(release_env["IMAGE"], "1.0.0")
    assert refused.returncode != 0
    assert "immutable" in refused.stderr
    # A development build of one commit may be rebuilt and pushed again.
    registry = Registry(release_env["REGISTRY"])
    for version in ("1.0.0", "2.0.0"):
        built = engine.images.get(images[version])
        built.tag(release_env["IMAGE"], "0.0.0-dev.test")
        ok(make("push", release_env, VERSION="0.0.0-dev.test"))
        assert registry.config_digest(release_env["IMAGE"], "0.0.0-dev.test") == built.id


def test_deploy_switch_broken_release_and_rollbacks(engine, images, release_env, model_dir):
    env, registry = release_env, Registry(release_env["REGISTRY"])
    for version in images:  # pushing the same image again is a no-op: this test stands alone
        ok(make("push", env, VERSION=version))
    rows = [json.loads((model_dir / "manifest.json").read_text())["example"]]

    def serving(version: str):
        (container,) = deployed(engine, env)
        digest = registry.digest(env["IMAGE"], version)
        assert container.labels[VERSION_LABEL] == version
        assert container.labels[IMAGE_LABEL] == f"{env['REGISTRY']}/{env['IMAGE']}@{digest}"
        assert registry.digest(env["IMAGE"], PRODUCTION_TAG) == digest
        assert requests.get(f"http://127.0.0.1:{env['PORT']}/readyz", timeout=5).ok
        # gunicorn's graceful timeout is the deploy's, which stops it only after a margin
        environment = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
        assert environment["GRACEFUL_TIMEOUT"] == str(Settings().graceful_timeout)

    release_tools.release_story(env, rows, lambda: f"http://127.0.0.1:{env['PORT']}/", serving)

    other = DockerDriver(Settings(image="another-service", port=int(env["PORT"])), engine)
    service = env["IMAGE"].replace("/", "-")
    with pytest.raises(DeployError, match=f"port {env['PORT']} is taken by {service};"):
        other.deploy(Release("1.0.0", images["1.0.0"]))
    serving("2.0.0")

    # two deploys to one target at once: the second is refused, the first goes through
    first = subprocess.Popen(["make", "deploy", "VERSION=1.0.0"], cwd=REPO, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lock = f"{service}-deploy-lock"
    while first.poll() is None and not engine.containers.list(all=True,
                                                              filters={"name": lock}):
        time.sleep(0.1)
    second = make("deploy", env, VERSION="2.0.0")
    output, errors = first.communicate()
    assert first.returncode == 0, output + errors
    assert second.returncode != 0
    assert f"another deploy of {service} (to 1.0.0) holds this target since" in second.stderr
    serving("1.0.0")
    assert not engine.containers.list(all=True, filters={"name": lock})


def test_slow_clients_do_not_starve_the_image(engine, images, model_dir):
    """The image's own server with one CPU (`--cpus 1`: one worker, from the cgroup quota)
    holds 200 connections that stall or trickle (bench/slow_clients.py), answers ordinary
    requests promptly all the while, and closes the slow ones within its documented limits
    (headers 5 s, body 10 s)."""
    from bench.slow_clients import KINDS, SlowClients

    port = free_port()
    container = engine.containers.run(
        images["1.0.0"], detach=True, network_mode="host", read_only=True,
        tmpfs={"/tmp": ""}, nano_cpus=10**9, environment={"PORT": str(port)},
        name=f"slow-clients-{uuid.uuid4().hex[:8]}")
    base = f"http://127.0.0.1:{port}"
    rows = [json.loads((model_dir / "manifest.json").read_text())["example"]]
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{base}/readyz", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, container.logs().decode()[-2000:]
            time.sleep(0.1)
        assert container.logs().decode().count("Booting worker") == 1
        with SlowClients(port, 200) as clients:
            clients.wait_open()
            assert clients.open == 200
            times = []
            for _ in range(20):
                started = time.monotonic()
                response = requests.post(f"{base}/v1/models/model:predict",
                                         json={"instances": rows}, timeout=3)
                times.append(time.monotonic() - started)
                assert response.status_code == 200, response.text
            times.sort()
            print(f"ordinary requests beside 200 slow connections: median {times[10]:.3f} s, "
                  f"max {times[-1]:.3f} s")
            assert times[10] < 0.5
            deadline = time.monotonic() + 20
            while not all(clients.held[kind] for kind in KINDS):
                assert time.monotonic() < deadline, clients.summary()
                time.sleep(0.2)
            held = clients.summary()
        print(f"slow connections closed by the server: {held}")
        assert all(figures["max_held_s"] <= 5 + 10 + 1 for figures in held.values()), held
        logs = [json.loads(line) for line in container.logs().decode().splitlines()]
        assert any(line.get("status") == 408 and line["route"] == "(incomplete body)"
                   for line in logs)
    finally:
        container.remove(force=True)
