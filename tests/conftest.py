"""Shared fixtures. `model_dir`: the real model (real data, real config), trained once per
test session in-process, so training/ counts for coverage. Copy it before corrupting it."""
from __future__ import annotations

from pathlib import Path

import pytest

import training  # noqa: F401  (quiets TensorFlow's logging before any test imports it)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "wdbc.csv"
SCHEMA = ROOT / "data" / "schema.json"


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    from training import gate, train
    from training.config import TrainConfig

    directory = tmp_path_factory.mktemp("model")
    train.run(DATA, SCHEMA, directory, TrainConfig(), gate.load_policy(), out=lambda line: None)
    return directory


@pytest.fixture(scope="session")
def untrained_model_dir(tmp_path_factory) -> Path:
    """A deliberately weak model through the same pipeline: one epoch at a learning rate
    of ~0 leaves the initial weights, which rank the test rows worse than chance."""
    from training import gate, train
    from training.config import TrainConfig

    directory = tmp_path_factory.mktemp("untrained")
    config = TrainConfig(architectures=("logistic_regression",), max_epochs=1,
                         logistic_regression_learning_rate=1e-9)
    train.run(DATA, SCHEMA, directory, config, gate.load_policy(), out=lambda line: None)
    return directory


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
