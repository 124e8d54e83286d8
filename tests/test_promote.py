"""Build once, promote the digest (deploy/promote.py), against the real registry on REGISTRY
(127.0.0.1:5000): what a release does when the default branch already published its commit's
image, when it did not, when the release is run again, and when the version is taken.

The images are two tiny ones made with `docker import` (a model directory and nothing else),
pushed by the real engine: promotion only reads and writes manifests, and `candidate` copies the
model out without running anything. Skips only when there is no engine or registry and CI is
not set.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest
import requests

from deploy import promote
from deploy.image import ImageError, git, sha_tag
from deploy.registry import Registry
from deploy.settings import Settings

pytestmark = [pytest.mark.docker]

REPO = Path(__file__).resolve().parents[1]
COMMIT = "0123abc" + "0" * 33


def unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this fails instead of skipping)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def engine():
    import docker
    try:
        client = docker.from_env()
        client.ping()
    except Exception as error:  # any failure to connect means "no engine here"
        unavailable(f"no Docker engine reachable ({type(error).__name__}: {error})")
    return client


@pytest.fixture
def settings(engine):
    registry = os.environ.get("REGISTRY", "127.0.0.1:5000")
    try:
        requests.get(f"http://{registry}/v2/", timeout=5).raise_for_status()
    except requests.RequestException as error:
        unavailable(f"no registry at {registry} ({error})")
    settings = Settings(registry=registry, image=f"test-promote-{uuid.uuid4().hex[:8]}/model",
                        version="1.4.0")
    yield settings
    store = Registry(registry)
    for digest in {store.digest(settings.repository, tag) for tag in store.tags(settings.image)}:
        store.delete(settings.repository, digest)
    for image in engine.images.list(name=settings.remote):
        engine.images.remove(image.id, force=True)


def publish(engine, settings: Settings, tag: str, model: bytes) -> str:
    """Push a one-layer image holding /opt/model/model.tflite as REGISTRY/IMAGE:tag."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        for name, data in (("opt/model/model.tflite", model), ("opt/model/manifest.json", b"{}")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    engine.api.import_image_from_data(layer.getvalue(), repository=settings.remote, tag=tag)
    for event in engine.images.push(settings.remote, tag=tag, stream=True, decode=True):
        assert "error" not in event, event
    return Registry(settings.registry).digest(settings.repository, tag)


def test_without_a_published_image_the_release_builds(settings):
    registry = Registry(settings.registry)
    assert promote.find(settings, registry, COMMIT) is None
    with pytest.raises(ImageError, match="no image of commit 0123abc .*nothing to promote"):
        promote.promote(settings, registry, COMMIT)
    assert registry.tags(settings.image) == []


def test_the_published_digest_is_promoted_once_and_a_rerun_changes_nothing(engine, settings):
    registry = Registry(settings.registry)
    built = publish(engine, settings, sha_tag(COMMIT), b"main's model")
    found = promote.find(settings, registry, COMMIT)
    assert found == promote.Candidate(built, sha_tag(COMMIT), released=False)
    assert registry.digest(settings.repository, "1.4.0") is None, "find only reads"

    assert promote.promote(settings, registry, COMMIT) == found
    assert registry.digest(settings.repository, "1.4.0") == built
    # A re-run of the release: the version already is that image; nothing moves.
    again = promote.promote(settings, registry, COMMIT)
    assert again == promote.Candidate(built, "1.4.0", released=True)
    assert registry.digest(settings.repository, "1.4.0") == built
    assert sorted(registry.tags(settings.image)) == ["1.4.0", sha_tag(COMMIT)]


def test_a_version_that_names_another_image_is_never_moved(engine, settings):
    registry = Registry(settings.registry)
    taken = publish(engine, settings, "1.4.0", b"an older build of 1.4.0")
    publish(engine, settings, sha_tag(COMMIT), b"main's model")
    for attempt in (promote.find, promote.promote):
        with pytest.raises(ImageError, match=r"1\.4\.0 already exists .* is not the image of "
                                             "commit 0123abc"):
            attempt(settings, registry, COMMIT)
    assert registry.digest(settings.repository, "1.4.0") == taken


def test_only_a_release_is_promoted(settings):
    development = Settings(registry=settings.registry, image=settings.image,
                           version="0.0.0-dev.0123abc")
    with pytest.raises(ImageError, match="development build: only a release"):
        promote.find(development, Registry(settings.registry), COMMIT)


def test_make_candidate_and_promote_as_the_release_job_runs_them(engine, settings, tmp_path):
    """The commands of ci.yml's model and publish jobs on a tag, on this checkout's commit."""
    commit = git("rev-parse", "HEAD")
    built = publish(engine, settings, sha_tag(commit), b"the model main tested")
    env = {**os.environ, "REGISTRY": settings.registry, "IMAGE": settings.image,
           "VERSION": "1.4.0", "MODEL_DIR": str(tmp_path / "model"),
           "GITHUB_OUTPUT": str(tmp_path / "output")}

    def run(command: str) -> str:
        result = subprocess.run([sys.executable, "-m", "deploy", command], cwd=REPO, env=env,
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        return result.stdout

    said = run("candidate")
    assert f"{settings.remote}@{built} ({sha_tag(commit)})" in said and "no rebuild" in said
    assert (tmp_path / "model" / "model.tflite").read_bytes() == b"the model main tested"
    assert "1.4.0" not in Registry(settings.registry).tags(settings.image)
    assert "now is" in run("promote")
    assert "already is" in run("promote")
    assert Registry(settings.registry).digest(settings.repository, "1.4.0") == built
    assert (tmp_path / "output").read_text().splitlines() == [f"digest={built}"] * 3
