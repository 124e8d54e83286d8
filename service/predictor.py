"""The model as the service sees it: manifest.json and model.tflite from MODEL_DIR, checked,
loaded into LiteRT and run one batch per call. No TensorFlow here: the serving image has none.
"""
from __future__ import annotations

import hashlib
import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from training.schema import Schema

MODEL_FILE = "model.tflite"
MANIFEST_FILE = "manifest.json"


class ModelError(Exception):
    """The model in MODEL_DIR cannot be served; the message says why and which file."""


@dataclass(frozen=True)
class Manifest:
    """The parts of manifest.json the service uses."""

    version: str
    schema: Schema
    sha256: str
    threshold: float
    example: dict | None
    raw: dict

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelError(f"{path} is missing") from None
        except (OSError, ValueError) as error:
            raise ModelError(f"{path} is not readable JSON: {error}") from None
        try:
            version = str(raw["version"])
            if not version.isdigit():
                raise ValueError(f"version {version!r} is not a non-negative integer")
            schema = Schema.from_dict(raw["schema"])
            sha256 = raw["files"][MODEL_FILE]["sha256"]
            threshold = float(raw.get("model", {}).get("threshold", 0.5))
        except (KeyError, TypeError, ValueError) as error:
            raise ModelError(f"{path} lacks what the service needs "
                             f"(version, schema, files.{MODEL_FILE}.sha256): "
                             f"{type(error).__name__}: {error}") from None
        example = raw.get("example")
        return cls(version, schema, sha256, threshold,
                   example if isinstance(example, dict) else None, raw)


class Predictor:
    """One LiteRT interpreter per thread (an interpreter is not thread-safe), all built from
    the same verified bytes; `predict` runs a whole batch in one interpreter call."""

    def __init__(self, model_dir: Path):
        self.model_dir = Path(model_dir)
        self.manifest = Manifest.load(self.model_dir / MANIFEST_FILE)
        path = self.model_dir / MODEL_FILE
        try:
            # Load the bytes that were hashed, so the file cannot change in between.
            self._content = path.read_bytes()
        except FileNotFoundError:
            raise ModelError(f"{path} is missing") from None
        except OSError as error:
            raise ModelError(f"{path} is not readable: {error}") from None
        actual = hashlib.sha256(self._content).hexdigest()
        if actual != self.manifest.sha256:
            raise ModelError(f"{path} has sha256 {actual}, but {MANIFEST_FILE} says "
                             f"{self.manifest.sha256}: the model is not the one trained")
        self._local = threading.local()
        interpreter = self._interpreter()  # fails here, not on the first request
        inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
        n_features = len(self.schema.features)
        if (len(inputs) != 1 or len(outputs) != 1 or inputs[0]["dtype"] != np.float32
                or list(inputs[0]["shape_signature"][1:]) != [n_features]
                or list(outputs[0]["shape_signature"][1:]) != [1]):
            seen_inputs = [(d["dtype"].__name__, d["shape_signature"].tolist()) for d in inputs]
            seen_outputs = [d["shape_signature"].tolist() for d in outputs]
            raise ModelError(f"{path} does not take one float32 [N, {n_features}] input and "
                             f"give one [N, 1] output: inputs {seen_inputs}, "
                             f"outputs {seen_outputs}")
        # Every interpreter built from these bytes has the same tensor indices.
        self._input_index, self._output_index = inputs[0]["index"], outputs[0]["index"]
        self.input_tensor_name = inputs[0]["name"]
        self.output_tensor_name = outputs[0]["name"]

    @property
    def schema(self) -> Schema:
        return self.manifest.schema

    @property
    def version(self) -> str:
        return self.manifest.version

    def _interpreter(self) -> Interpreter:
        interpreter = getattr(self._local, "interpreter", None)
        if interpreter is None:
            try:
                # One thread: the service gets its parallelism from gunicorn's workers.
                # No XNNPACK delegate: for a tabular model it saves 6 us on 1024 rows, costs
                # 0.6 ms per interpreter and prints a line that is not JSON into the logs.
                interpreter = Interpreter(
                    model_content=self._content, num_threads=1,
                    experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
                interpreter.allocate_tensors()
            except (ValueError, RuntimeError) as error:
                raise ModelError(f"{self.model_dir / MODEL_FILE} does not load in LiteRT: "
                                 f"{error}") from None
            self._local.interpreter = interpreter
            self._local.rows = None
        return interpreter

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """Probabilities of the positive label for a float32 [N, F] batch: shape [N]."""
        interpreter = self._interpreter()
        if self._local.rows != len(rows):
            # Reallocating costs more than the inference: only when the batch size changes.
            interpreter.resize_tensor_input(self._input_index, rows.shape, strict=True)
            interpreter.allocate_tensors()
            self._local.rows = len(rows)
        interpreter.set_tensor(self._input_index, rows)
        interpreter.invoke()
        return interpreter.get_tensor(self._output_index)[:, 0]

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
