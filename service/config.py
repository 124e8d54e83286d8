"""The service's settings: one immutable object, read from the environment once at start."""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path


@dataclass(frozen=True)
class Config:
    """What `create_app` needs; every field has an environment variable of the same name
    in upper case (MODEL_DIR, MODEL_NAME, MAX_ROWS, MAX_BODY_BYTES, LOG_FEATURES)."""

    model_dir: Path = Path("artifacts")
    # The name in /v1/models/{name}: TF Serving clients address the model by it.
    model_name: str = "model"
    # One request may carry at most this many rows (the interpreter runs them in one call).
    max_rows: int = 1024
    # Larger bodies get a 413 before they are read. 1024 rows of 30 named features in row
    # format are about 1.3 MB, so 4 MiB leaves room for long feature names.
    max_body_bytes: int = 4 * 1024 * 1024
    # Put the feature values of each predict request in its log line (debugging only: they
    # may be personal data).
    log_features: bool = False

    @classmethod
    def from_env(cls, environ=os.environ) -> Config:
        """Read the settings; a malformed value raises ValueError naming the variable."""
        values = {}
        for field in fields(cls):
            raw = environ.get(field.name.upper())
            if raw is None or raw == "":
                continue
            values[field.name] = _parse(field.name.upper(), field.default, raw)
        config = cls(**values)
        for name in ("max_rows", "max_body_bytes"):
            if getattr(config, name) < 1:
                raise ValueError(f"{name.upper()} must be a positive integer, "
                                 f"not {getattr(config, name)}")
        return config


def _parse(variable: str, default, raw: str):
    if isinstance(default, bool):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{variable} must be true or false, not {raw!r}")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{variable} must be an integer, not {raw!r}") from None
    if isinstance(default, Path):
        return Path(raw)
    return raw
