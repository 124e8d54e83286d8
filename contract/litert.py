"""The one LiteRT runner: training checks parity and measures latency with it, evaluate scores
the champion with it, the service answers requests with it. No TensorFlow here.

The model takes one float32 input [N, F] and gives one float32 output [N, K]. The interpreter
runs on one thread without the default XNNPACK delegate: for a tabular model the delegate
saves 6 us on 1024 rows, costs 0.6 ms per interpreter and prints a line that is not JSON into
the service's logs; training measures exactly what the service runs.
"""
from __future__ import annotations

import time

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from contract.errors import InputError


class LiteRTModel:
    """One interpreter over the model's bytes. Not thread-safe (LiteRT interpreters are not):
    a threaded caller keeps one per thread."""

    def __init__(self, content: bytes, name: str = "model.tflite"):
        self.name = name
        try:
            self._interpreter = Interpreter(
                model_content=content, num_threads=1,
                experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise InputError(f"{name}: not a LiteRT model ({e})") from e
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if (len(inputs) != 1 or len(outputs) != 1 or inputs[0]["dtype"] != np.float32
                or len(inputs[0]["shape_signature"]) != 2
                or len(outputs[0]["shape_signature"]) != 2):
            seen_inputs = [(d["dtype"].__name__, d["shape_signature"].tolist()) for d in inputs]
            seen_outputs = [d["shape_signature"].tolist() for d in outputs]
            raise InputError(f"{name}: expected one float32 input [N, F] and one output [N, K], "
                             f"not inputs {seen_inputs}, outputs {seen_outputs}")
        self._input = inputs[0]["index"]
        self._output = outputs[0]["index"]
        self.n_features = int(inputs[0]["shape_signature"][1])
        self.n_outputs = int(outputs[0]["shape_signature"][1])
        self.input_name = inputs[0]["name"]
        self.output_name = outputs[0]["name"]
        self._rows = None

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The model's output for a batch, shape [N, K]; a view valid until the next call."""
        if len(x) != self._rows:
            # Reallocating costs more than the inference: only when the batch size changes.
            self._interpreter.resize_tensor_input(self._input, [len(x), self.n_features],
                                                  strict=True)
            self._interpreter.allocate_tensors()
            self._rows = len(x)
        self._interpreter.set_tensor(self._input, np.ascontiguousarray(x, dtype=np.float32))
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output)

    def latency_us(self, x: np.ndarray, repeats: int = 200) -> float:
        """Median wall time of one call on the rows of `x`, in microseconds, after a warm-up."""
        self.predict(x)
        timings = []
        for _ in range(repeats):
            start = time.perf_counter_ns()
            self.predict(x)
            timings.append(time.perf_counter_ns() - start)
        return float(np.median(timings)) / 1000
