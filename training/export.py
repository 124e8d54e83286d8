"""Export the Keras model to LiteRT, prove both give the same probabilities, and write the
artifacts the service and the image read (model.tflite, model.keras, manifest.json)."""
from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import io
import platform
import subprocess
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from contract.litert import LiteRTModel
from contract.manifest import KERAS_FILE, MODEL_FILE
from contract.schema import Schema
from training.artifacts import sha256

# The service must answer what training measured: float32 round-off differs between the
# two runtimes only in the last bits, so anything above this is a broken export. On
# probabilities it is absolute; on a regression value, relative to the target's range.
PARITY_TOLERANCE = 1e-5


class ParityError(RuntimeError):
    """The LiteRT model does not give the Keras model's outputs."""


def to_tflite(model: keras.Model) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    # The converter prints the intermediate SavedModel's signature; nobody needs to read it.
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def parity_rows(x: np.ndarray, schema: Schema) -> np.ndarray:
    """The test rows, and copies of the first one with each nullable feature missing and each
    category feature at each of its categories: the preprocessing's every branch."""
    extra = []
    for i, feature in enumerate(schema.features):
        values = list(range(len(feature.categories))) + ([np.nan] if feature.nullable else [])
        for value in values:
            row = x[0].copy()
            row[i] = value
            extra.append(row)
    return np.vstack([x, *extra]) if extra else x


def parity_scale(schema: Schema, y: np.ndarray) -> float:
    """What a difference is measured against: 1 for probabilities, the target's range (on
    the training split) for a regression value."""
    if schema.task != "regression":
        return 1.0
    return float(np.ptp(y)) or 1.0


def parity(model: keras.Model, lite: LiteRTModel, x: np.ndarray, scale: float = 1.0) -> dict:
    """The largest difference between Keras and LiteRT outputs on `x`, absolute and divided by
    `scale`; raises ParityError when the latter exceeds PARITY_TOLERANCE."""
    expected = model.predict(x, verbose=0)
    worst = float(np.max(np.abs(expected - lite.predict(x))))
    if not worst / scale <= PARITY_TOLERANCE:
        raise ParityError(f"the LiteRT export differs from the Keras model by up to {worst:.3g} "
                          f"({worst / scale:.3g} of {scale:g}) on {len(x)} rows (allowed: "
                          f"{PARITY_TOLERANCE:g}); not writing it")
    return {"max_abs_diff": worst, "scale": scale, "max_diff": worst / scale, "rows": len(x)}


def git_commit() -> str:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def library_versions() -> dict:
    return {"tensorflow": tf.__version__, "keras": keras.__version__,
            "ai-edge-litert": importlib.metadata.version("ai-edge-litert"),
            "numpy": np.__version__, "python": platform.python_version()}


def manifest(model_dir: Path, data: dict, schema: dict, model: dict, example: dict,
             trained_at: datetime.datetime) -> dict:
    return {
        # TF Serving's model version: an integer that grows with each training.
        "version": str(int(trained_at.timestamp())),
        "created": trained_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "git_commit": git_commit(),
        "files": {name: {"sha256": sha256(model_dir / name)}
                  for name in (MODEL_FILE, KERAS_FILE)},
        "data": data,
        "schema": schema,
        "model": model,
        # A real row: the service warms up with it and its try-it page shows it.
        "example": example,
        "libraries": library_versions(),
    }
