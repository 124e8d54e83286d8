"""The training settings: the split, the seeds, early stopping and which models compete. Each
model's own settings live beside its builder (training/models.py)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 20260101
    validation_fraction: float = 0.15
    test_fraction: float = 0.20
    max_epochs: int = 300
    batch_size: int = 32
    # Epochs without a better validation score before training stops (best weights kept).
    patience: int = 20
    # The models that compete, by their registered names, in this order (a tie goes to the first).
    models: tuple[str, ...] = ("mlp", "linear")
    # A model's settings when not its settings class's defaults: name -> settings instance.
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = cls.__dataclass_fields__
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()
                      if k in known})
