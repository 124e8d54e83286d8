"""Shared fixtures. `model_dir`: the real model (real data, real config), trained once per
test session in-process, so training/ counts for coverage. Copy it before corrupting it."""
from __future__ import annotations

from pathlib import Path

import pytest

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
