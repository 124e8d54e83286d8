"""The training settings: one place for the split, the seeds and each model's parameters."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 20260101
    validation_fraction: float = 0.15
    test_fraction: float = 0.20
    max_epochs: int = 300
    batch_size: int = 32
    # Epochs without a better validation loss before training stops (best weights kept).
    patience: int = 20
    architectures: tuple[str, ...] = ("mlp", "logistic_regression")
    mlp_hidden_units: tuple[int, ...] = (16, 8)
    mlp_dropout: float = 0.1
    mlp_learning_rate: float = 1e-3
    logistic_regression_l2: float = 1e-3
    logistic_regression_learning_rate: float = 1e-2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
