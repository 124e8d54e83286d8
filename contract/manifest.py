"""manifest.json, the model directory's description of itself: which model files (with their
sha256), which data and schema trained it, the model's version and headline metric, a real
example row. Training writes it (training/export.py); this is the one place that reads it, for
evaluate, the service, the image's labels, the smoke test and the benchmark.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from contract.errors import InputError
from contract.schema import Schema

MODEL_FILE = "model.tflite"
KERAS_FILE = "model.keras"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class Manifest:
    version: str         # TF Serving's model version: digits, growing with each training
    schema: Schema
    model_sha256: str    # of MODEL_FILE
    example: dict | None  # a real row of the data, keyed by feature name
    raw: dict            # everything, for the report and the labels

    @property
    def threshold(self) -> float:
        return float(self.raw.get("model", {}).get("threshold", 0.5))

    @classmethod
    def load(cls, model_dir: str | Path) -> Manifest:
        """The manifest in `model_dir`; an InputError that names the file says what is wrong."""
        path = Path(model_dir) / MANIFEST_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{path} is missing: train a model into {path.parent} "
                             f"first") from None
        except (OSError, ValueError) as error:
            raise InputError(f"{path} is not readable JSON: {error}") from None
        try:
            return cls.from_dict(raw)
        except InputError as error:
            raise InputError(f"{path}: {error}") from None

    @classmethod
    def from_dict(cls, raw: dict) -> Manifest:
        try:
            version = str(raw["version"])
            if not version.isdigit():
                raise ValueError(f"version {version!r} is not a non-negative integer")
            schema = Schema.from_dict(raw["schema"])
            sha256 = raw["files"][MODEL_FILE]["sha256"]
            if not isinstance(sha256, str):
                raise TypeError(f"files.{MODEL_FILE}.sha256 is not a string")
            float(raw.get("model", {}).get("threshold", 0.5))
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise InputError(f"not a training manifest: it lacks what a model needs (version, "
                             f"schema, files.{MODEL_FILE}.sha256): "
                             f"{type(error).__name__}: {error}") from None
        example = raw.get("example")
        return cls(version, schema, sha256, example if isinstance(example, dict) else None, raw)
