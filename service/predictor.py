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
        n_features, n_outputs = len(self.schema.features), len(self.schema.outputs)
        if (model.n_features, model.n_outputs) != (n_features, n_outputs):
            raise ModelError(f"{path} does not take one float32 [N, {n_features}] input and "
                             f"give one [N, {n_outputs}] output ({self._outputs_are()}): it "
                             f"takes [N, {model.n_features}] and gives "
                             f"[N, {model.n_outputs}]")
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
        """The model's output for a float32 [N, F] batch, [N, K] (see Schema.outputs): binary
        the positive label's probability, multiclass one probability per label, regression
        the value."""
        return self._model().predict(rows)

    def example(self) -> dict:
        """A row to show and to warm up with: the manifest's `example` (a real row of the
        data, as JSON values) when training wrote one and it fits the schema, else a typical
        value for each feature."""
        example = self.manifest.example
        if example is not None and set(example) == set(self.schema.feature_names):
            try:
                self.encode(example)
                return {name: example[name] for name in self.schema.feature_names}
            except InputError:
                pass  # not shown: typical values are
        return {feature.name: _typical(feature) for feature in self.schema.features}

    def encode(self, row: dict) -> np.ndarray:
        """One row of JSON values, keyed by feature name, as the model's float32 [1, F]."""
        return np.array([[feature.encode(row[feature.name]) for feature in self.schema.features]],
                        dtype=np.float32)

    def warm_up(self) -> list[float]:
        """Predict the example row once; the service is ready only when the answer is what the
        task promises (probabilities, or a finite value). Returns that answer."""
        output = self.predict(self.encode(self.example()))[0].tolist()
        if not self._as_promised(output):
            raise ModelError(f"{self.model_dir / MODEL_FILE} answered {output} for the example "
                             f"row, not {self._outputs_are()}")
        return output

    def _as_promised(self, output: list[float]) -> bool:
        if not all(math.isfinite(value) for value in output):
            return False
        if self.schema.task == "regression":
            return True
        if not all(0.0 <= p <= 1.0 for p in output):
            return False
        # float32 softmax sums to 1 within a few 1e-7
        return self.schema.task != "multiclass" or abs(sum(output) - 1.0) <= 1e-4

    def _outputs_are(self) -> str:
        task, outputs = self.schema.task, self.schema.outputs
        if task == "binary":
            return f"the probability of {outputs[0]!r}"
        if task == "multiclass":
            return f"{len(outputs)} probabilities summing to 1, of {', '.join(outputs)}"
        return f"a finite value of {outputs[0]!r}"


def _typical(feature):
    if feature.is_category:
        return feature.categories[0]
    low, high = feature.minimum, feature.maximum
    if low is not None and high is not None:
        value = (low + high) / 2
    else:
        value = low if low is not None else high if high is not None else 0.0
    return round(value) if feature.dtype == "int" else value
