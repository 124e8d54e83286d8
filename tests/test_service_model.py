"""Loading the model: a missing, corrupt or mismatched model keeps /readyz failing with the
reason (in the answer and in one error log line), never a half-working service; the example
row; and no TensorFlow in the serving process."""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys

import pytest

from service_tasks import active_data, real_rows

from service import create_app
from service.config import Config
from service.predictor import Predictor


@pytest.fixture
def copy(model_dir, tmp_path):
    return shutil.copytree(model_dir, tmp_path / "model")


def edit_manifest(directory, change):
    manifest = json.loads((directory / "manifest.json").read_text())
    change(manifest)
    (directory / "manifest.json").write_text(json.dumps(manifest))


def corrupt_with_matching_hash(directory):
    (directory / "model.tflite").write_bytes(b"not a flatbuffer at all")
    digest = hashlib.sha256(b"not a flatbuffer at all").hexdigest()
    edit_manifest(directory, lambda m: m["files"]["model.tflite"].update(sha256=digest))


BROKEN = {
    "model missing": (lambda d: (d / "model.tflite").unlink(), "model.tflite is missing"),
    "model changed": (lambda d: (d / "model.tflite").write_bytes(b"\0" * 100),
                      "model.tflite has sha256 "),
    "model corrupt": (corrupt_with_matching_hash, "does not load in LiteRT"),
    "manifest missing": (lambda d: (d / "manifest.json").unlink(), "manifest.json is missing"),
    "manifest not JSON": (lambda d: (d / "manifest.json").write_text("{"),
                          "manifest.json is not readable JSON"),
    "manifest without hash": (lambda d: edit_manifest(d, lambda m: m.pop("files")),
                              "lacks what a model needs"),
    "schema and model disagree": (
        lambda d: edit_manifest(d, lambda m: m["schema"]["features"].pop()),
        "does not take one float32 [N, "),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_a_broken_model_keeps_the_service_unready(copy, name, caplog):
    breaks, reason = BROKEN[name]
    breaks(copy)
    logger = logging.getLogger("service")
    logger.addHandler(caplog.handler)
    try:
        app = create_app(Config(model_dir=copy))
    finally:
        logger.removeHandler(caplog.handler)
    [line] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert line.getMessage().startswith("model not loaded: the service stays unready")
    assert reason in line.error and str(copy) in line.error
    client = app.test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["status"] == "failed"  # for good: a deploy stops waiting
    assert reason in ready.get_json()["reason"]
    assert client.get("/healthz").status_code == 200
    response = client.post("/v1/models/model:predict", data='{"instances": [[1]]}')
    assert response.status_code == 503
    assert reason in response.get_json()["error"]
    assert client.get("/v1/models/model").status_code == 503
    page = client.get("/")
    assert page.status_code == 503 and reason.encode() in page.data
    assert client.get("/openapi.json").status_code == 200


def test_the_example_row_comes_from_the_manifest_when_it_fits(copy):
    schema, path = active_data()
    real = real_rows(schema, path, 3)[-1]
    edit_manifest(copy, lambda m: m.update(example=real))
    assert Predictor(copy).example() == real
    # one that does not fit the schema is not shown: typical values that do fit are
    feature = schema.features[0]
    broken = {**real, feature.name: "no such category" if feature.is_category else -1e39}
    edit_manifest(copy, lambda m: m.update(example=broken))
    predictor = Predictor(copy)
    example = predictor.example()
    assert list(example) == list(schema.feature_names)
    assert example[feature.name] != broken[feature.name]
    predictor.encode(example)  # fits: no InputError
    predictor.warm_up()


def test_the_service_never_imports_tensorflow(model_dir):
    """The serving image has no TensorFlow: loading and predicting must not need it."""
    program = f"""
import sys
from service import create_app
from service.config import Config
client = create_app(Config(model_dir={str(model_dir)!r})).test_client()
row = client.application.extensions["service"].predictor.example()
assert client.post("/v1/models/model:predict", json={{"instances": [row]}}).status_code == 200
assert client.get("/").status_code == 200 and client.get("/openapi.json").status_code == 200
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras"))
print(heavy)
"""
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
