"""Every shipped example data set, end to end as CI runs the default one: it trains with the
full settings, passes its task's default gate, is served (the Flask app on the trained model,
real rows of the CSV in, the exported model's answer out) and, as an image, passes `make
build smoke`. Each example trains once (a few tens of seconds)."""
from __future__ import annotations

import csv
import json
import shutil
import uuid

import numpy as np
import pytest

from contract.litert import LiteRTModel
from contract.schema import Schema
from training import evaluate, gate, train
from training.config import TrainConfig
from training.metrics import metrics_for

import release_tools
from release_tools import REPO, make, ok, unavailable

EXAMPLES = sorted(path.name for path in (REPO / "examples").iterdir() if path.is_dir())
pytestmark = [pytest.mark.slow, pytest.mark.trains]


def example_files(name: str):
    directory = REPO / "examples" / name
    (data,) = directory.glob("*.csv")
    return data, directory / "schema.json"


def request_rows(data, schema: Schema, count: int) -> list[dict]:
    """The first rows of the CSV as a client sends them: numbers as numbers, categories as
    their text, an empty cell as null."""
    rows = []
    with data.open(newline="") as f:
        for row in list(csv.DictReader(f))[:count]:
            rows.append({feature.name: None if not row[feature.name].strip()
                         else row[feature.name] if feature.is_category
                         else float(row[feature.name])
                         for feature in schema.features})
    return rows


@pytest.fixture(scope="module", params=EXAMPLES)
def trained(request, tmp_path_factory):
    name = request.param
    data, schema_path = example_files(name)
    task = Schema.load(schema_path).task
    model_dir = tmp_path_factory.mktemp(name)
    train.run(data, schema_path, model_dir, TrainConfig(),
              gate.load_policy(gate.TASK_POLICIES / f"{task}.toml", task), out=lambda line: None)
    return name, data, schema_path, model_dir


def test_the_examples_are_the_three_tasks_and_say_where_they_come_from():
    tasks = {Schema.load(example_files(name)[1]).task for name in EXAMPLES}
    assert tasks == {"binary", "multiclass", "regression"}
    for name in EXAMPLES:
        text = (REPO / "examples" / name / "DATA.md").read_text()
        assert "## Source" in text and "## License" in text


def test_each_example_passes_its_task_gate_and_is_served_as_trained(trained):
    name, data, schema_path, model_dir = trained
    schema = Schema.load(schema_path)
    policy = gate.TASK_POLICIES / f"{schema.task}.toml"
    assert evaluate.run(model_dir, None, policy, out=lambda line: None) == 0, name
    verdict = json.loads((model_dir / "evaluation.json").read_text())
    assert set(metrics_for(schema.task)) <= set(verdict["metrics"])

    from service import create_app
    from service.config import Config
    client = create_app(Config(model_dir=model_dir)).test_client()
    rows = request_rows(data, schema, 40)
    if any(feature.nullable for feature in schema.features):
        assert any(None in row.values() for row in rows)  # missing values go through
    answer = client.post("/v1/models/model:predict", json={"instances": rows})
    assert answer.status_code == 200, answer.get_json()
    predictions = np.array(answer.get_json()["predictions"])
    assert predictions.shape == (len(rows), len(schema.outputs))
    x = np.array([[f.encode(row[f.name]) for f in schema.features] for row in rows],
                 dtype=np.float32)
    expected = LiteRTModel((model_dir / "model.tflite").read_bytes()).predict(x)
    np.testing.assert_allclose(predictions, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.docker
def test_each_example_image_passes_the_smoke_test(trained):
    import docker
    try:
        engine = docker.from_env(use_ssh_client=True)
        engine.ping()
    except Exception as error:  # any failure to connect means "no engine here"
        unavailable(f"no Docker engine reachable ({type(error).__name__}: {error})")
    name, _, _, model_dir = trained
    env = release_tools.release_env()
    # The image is built from the repository, so the model goes inside it.
    inside = REPO / f".test-build-{uuid.uuid4().hex[:8]}"
    try:
        shutil.copytree(model_dir, inside / "model")
        variables = {"VERSION": "1.0.0", "MODEL_DIR": str((inside / "model").relative_to(REPO))}
        ok(make("build", env, **variables))
        output = ok(make("smoke", env, **variables))
        assert f"smoke test of {env['IMAGE']}:1.0.0 passed" in output, name
    finally:
        shutil.rmtree(inside, ignore_errors=True)
        release_tools.remove_releases(engine, env)
