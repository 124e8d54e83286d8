"""Shared fixtures. `model_dir`: the real model (the active data set in data/, real config),
trained once per test session in-process, so training/ counts for coverage. Copy it before
corrupting it. `write_task_data`: a small data set of each task, for tests that must not
depend on the active one."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

import release_tools
import training  # noqa: F401  (quiets TensorFlow's logging before any test imports it)

ROOT = Path(__file__).resolve().parents[1]
# The machine's Docker client and engine from `make provision` (local.env), as the Makefile
# reads them, so `python -m pytest` talks to the same engine as `make test`.
if (ROOT / "local.env").is_file():
    for line in (ROOT / "local.env").read_text().splitlines():
        name, _, value = line.partition("=")
        if name in ("DOCKER", "DOCKER_HOST") and value:
            os.environ.setdefault(name, value)
SCHEMA = ROOT / "data" / "schema.json"
DATA = next((ROOT / "data").glob("*.csv"))  # the active data set: the one CSV in data/

TASKS = ("binary", "multiclass", "regression")
TASK_FEATURES = [
    {"name": "length", "dtype": "float", "minimum": 0, "maximum": 100, "nullable": True},
    {"name": "count", "dtype": "int", "minimum": 0, "maximum": 20},
    {"name": "colour", "dtype": "category", "categories": ["red", "green", "blue"],
     "nullable": True},
]
TASK_SCHEMAS = {
    "binary": {"task": "binary", "target": "y", "labels": ["no", "yes"], "positive_label": "yes"},
    "multiclass": {"task": "multiclass", "target": "size", "labels": ["small", "medium", "large"]},
    "regression": {"task": "regression", "target": "price"},
}


def write_task_data(directory: Path, task: str, rows: int = 300,
                    seed: int = 0) -> tuple[Path, Path]:
    """A learnable data set of `task` with a number, an integer and a category, some values
    missing: (the CSV, its schema.json) in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    length = rng.uniform(0, 100, rows).round(2)
    count = rng.integers(0, 21, rows)
    colour = rng.integers(0, 3, rows)
    score = length + 3 * count + 25 * colour + rng.normal(0, 5, rows)
    if task == "regression":
        target = [f"{v:.3f}" for v in score]
    else:
        labels = TASK_SCHEMAS[task]["labels"]
        cuts = np.quantile(score, np.linspace(0, 1, len(labels) + 1)[1:-1])
        target = [labels[i] for i in np.searchsorted(cuts, score)]
    schema = {**TASK_SCHEMAS[task], "features": TASK_FEATURES}
    schema_path = directory / "schema.json"
    schema_path.write_text(json.dumps(schema, indent=2))
    data_path = directory / f"{task}.csv"
    with data_path.open("w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["length", "count", "colour", schema["target"]])
        for i in range(rows):
            # Every 7th length and every 11th colour missing.
            out.writerow(["" if i % 7 == 3 else length[i], count[i],
                          "" if i % 11 == 5 else TASK_FEATURES[2]["categories"][colour[i]],
                          target[i]])
    return data_path, schema_path


# Fixtures that train a model on a real data set: a test that uses one (directly, through
# another fixture, or through a fixture parameter named "active data set" that asks for
# model_dir) is marked `trains`, so `make test-fast` can leave it out.
TRAINING_FIXTURES = {"model_dir", "untrained_model_dir", "task_model_dirs",
                     "wdbc_model_dir", "wdbc_untrained_dir"}  # the last two: test_gate.py


def pytest_collection_modifyitems(items):
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if (TRAINING_FIXTURES & set(getattr(item, "fixturenames", ()))
                or "active data set" in params.values()):
            item.add_marker(pytest.mark.trains)


def active_policy(schema_path: Path = SCHEMA):
    """The gate policy `make train` uses for a data set with this schema."""
    from contract.schema import Schema
    from training import gate

    task = Schema.load(schema_path).task
    return gate.load_policy(gate.default_policy(task), task)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    from training import train
    from training.config import TrainConfig

    directory = tmp_path_factory.mktemp("model")
    train.run(DATA, SCHEMA, directory, TrainConfig(), active_policy(), out=lambda line: None)
    return directory


@pytest.fixture(scope="session")
def untrained_model_dir(tmp_path_factory) -> Path:
    """A deliberately weak model through the same pipeline: one epoch at a learning rate
    of ~0 leaves the initial weights."""
    from training import train
    from training.config import TrainConfig
    from training.models import LinearSettings

    directory = tmp_path_factory.mktemp("untrained")
    config = TrainConfig(models=("linear",), max_epochs=1,
                         settings={"linear": LinearSettings(learning_rate=1e-9)})
    train.run(DATA, SCHEMA, directory, config, active_policy(), out=lambda line: None)
    return directory


@pytest.fixture(scope="session")
def task_model_dirs(tmp_path_factory) -> dict:
    """A model of each task, trained briefly on a small data set of that task: task ->
    (model directory, data, schema)."""
    from training import train
    from training.config import TrainConfig

    found = {}
    for task in TASKS:
        data, schema = write_task_data(tmp_path_factory.mktemp(f"{task}-data"), task)
        directory = tmp_path_factory.mktemp(f"{task}-model")
        train.run(data, schema, directory, TrainConfig(max_epochs=40, patience=10),
                  active_policy(schema), out=lambda line: None)
        found[task] = directory, data, schema
    return found


# The service's fixtures (tests/test_service_*.py): the app on the session's model, through
# Flask's test client.
@pytest.fixture
def service_app(model_dir):
    from service import create_app
    from service.config import Config

    return create_app(Config(model_dir=model_dir))


@pytest.fixture
def client(service_app):
    return service_app.test_client()


# The image's fixtures (tests/test_container.py, test_image_routes.py, test_registry.py): a
# real Docker engine and registry, and the release images built once per session.
@pytest.fixture(scope="session")
def engine():
    import docker
    try:
        client = docker.from_env(use_ssh_client=True)
        client.ping()
    except Exception as error:  # any failure to connect means "no engine here"
        release_tools.unavailable(f"no Docker engine reachable ({type(error).__name__}: "
                                  f"{error})")
    return client


@pytest.fixture(scope="session")
def release_env(engine):
    """The Makefile variables for this session's own image, registry repository and port."""
    from deploy.smoke import free_port
    env = release_tools.release_env(PORT=str(free_port()), DEPLOY_TARGET="docker")
    yield env
    for container in release_tools.deployed(engine, env, all=True):
        container.remove(force=True)
    release_tools.remove_releases(engine, env)


@pytest.fixture(scope="session")
def images(release_env, model_dir):
    """Build v1, v2 and a broken v2.1.0 (corrupt model) with `make build`, once."""
    with release_tools.built_releases(release_env, model_dir) as built:
        yield built
