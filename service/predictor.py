"""The model as the service sees it: manifest.json and model.tflite from MODEL_DIR, checked,
loaded into LiteRT and run one batch per call. No TensorFlow here: the serving image has none.
"""
from __future__ import annotations

import hashlib
import math
import threading
from pathlib import Path

import numpy as np

from contract.errors import InputError
from contract.litert import LiteRTModel
from contract.manifest import MANIFEST_FILE, MODEL_FILE, Manifest
from contract.schema import Schema


class ModelError(Exception):
    """The model in MODEL_DIR cannot be served; the message says why and which file."""


class Predictor:
    """One LiteRT interpreter per thread (an interpreter is not thread-safe), all built from
    the same verified bytes; `predict` runs a whole batch in one interpreter call."""

    def __init__(self, model_dir: Path):
        self.model_dir = Path(model_dir)
        try:
            self.manifest = Manifest.load(self.model_dir)
        except InputError as error:
            raise ModelError(str(error)) from None
        path = self.model_dir / MODEL_FILE
        try:
            # Load the bytes that were hashed, so the file cannot change in between.
            self._content = path.read_bytes()
        except FileNotFoundError:
            raise ModelError(f"{path} is missing") from None
        except OSError as error:
            raise ModelError(f"{path} is not readable: {error}") from None
        actual = hashlib.sha256(self._content).hexdigest()
        if actual != self.manifest.model_sha256:
            raise ModelError(f"{path} has sha256 {actual}, but {MANIFEST_FILE} says "
                             f"{self.manifest.model_sha256}: the model is not the one trained")
        self._local = threading.local()
        model = self._model()  # fails here, not on the first request
        n_features = len(self.schema.features)
        if (model.n_features, model.n_outputs) != (n_features, 1):
            raise ModelError(f"{path} does not take one float32 [N, {n_features}] input and "
                             f"give one [N, 1] output: it takes [N, {model.n_features}] and "
                             f"gives [N, {model.n_outputs}]")
        self.input_tensor_name = model.input_name
        self.output_tensor_name = model.output_name

    @property
    def schema(self) -> Schema:
        return self.manifest.schema

    @property
    def version(self) -> str:
        return self.manifest.version

    def _model(self) -> LiteRTModel:
        model = getattr(self._local, "model", None)
        if model is None:
            try:
                model = LiteRTModel(self._content, str(self.model_dir / MODEL_FILE))
            except InputError as error:
                raise ModelError(f"{self.model_dir / MODEL_FILE} does not load in LiteRT: "
                                 f"{error}") from None
            self._local.model = model
        return model

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """Probabilities of the positive label for a float32 [N, F] batch: shape [N]."""
        return self._model().predict(rows)[:, 0]

    def example(self) -> dict[str, float]:
        """A row to show and to warm up with: the manifest's `example` (a real row of the
        data) when training wrote one and it fits the schema, else mid-range values."""
        names = self.schema.feature_names
        example = self.manifest.example
        if (example is not None and set(example) == set(names)
                and all(_fits(feature, example[feature.name])
                        for feature in self.schema.features)):
            return {name: example[name] for name in names}
        return {feature.name: _typical(feature) for feature in self.schema.features}

    def warm_up(self) -> float:
        """Predict the example row once; the service is ready only when this gives a
        probability."""
        row = self.example()
        x = np.array([[row[name] for name in self.schema.feature_names]], dtype=np.float32)
        probability = float(self.predict(x)[0])
        if not 0.0 <= probability <= 1.0:
            raise ModelError(f"{self.model_dir / MODEL_FILE} answered {probability} for the "
                             f"example row, not a probability")
        return probability


def _fits(feature, value) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    if feature.dtype == "int" and value != int(value):
        return False
    return ((feature.minimum is None or value >= feature.minimum)
            and (feature.maximum is None or value <= feature.maximum))


def _typical(feature) -> float:
    low, high = feature.minimum, feature.maximum
    if low is not None and high is not None:
        value = (low + high) / 2
    else:
        value = low if low is not None else high if high is not None else 0.0
    return round(value) if feature.dtype == "int" else value
