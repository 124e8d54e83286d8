"""Run a .tflite model with the LiteRT interpreter, as the service does (no TensorFlow)."""
from __future__ import annotations

import time

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from training.errors import InputError


class LiteRTModel:
    """One float32 input [N, F] of raw features, one float32 output [N, 1]."""

    def __init__(self, content: bytes, name: str = "model.tflite"):
        try:
            self._interpreter = Interpreter(model_content=content)
        except (ValueError, RuntimeError) as e:
            raise InputError(f"{name}: not a LiteRT model ({e})") from e
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1 or len(inputs[0]["shape"]) != 2:
            raise InputError(f"{name}: expected one input [N, F] and one output [N, 1]")
        self._input = inputs[0]["index"]
        self._output = outputs[0]["index"]
        self.n_features = int(inputs[0]["shape"][1])
        self._rows = None

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities of the positive label, shape [N]."""
        if len(x) != self._rows:
            self._interpreter.resize_tensor_input(self._input, [len(x), self.n_features])
            self._interpreter.allocate_tensors()
            self._rows = len(x)
        self._interpreter.set_tensor(self._input, np.ascontiguousarray(x, dtype=np.float32))
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output)[:, 0].copy()

    def latency_us(self, x: np.ndarray, repeats: int = 200) -> float:
        """Median wall time of one call on the rows of `x`, in microseconds, after a warm-up."""
        self.predict(x)
        timings = []
        for _ in range(repeats):
            start = time.perf_counter_ns()
            self.predict(x)
            timings.append(time.perf_counter_ns() - start)
        return float(np.median(timings)) / 1000
