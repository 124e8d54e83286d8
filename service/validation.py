"""Predict request bodies in TensorFlow Serving's JSON formats, checked against the schema and
turned into one float32 [N, F] batch. Every refusal is an InvalidRequest (a 400) whose message
names what is wrong: the key, the row, the feature.

Accepted (F = the schema's features, in schema order; "named" = keyed by feature name):
  row format       {"instances": [{name: value, ...}, ...]}   or   {"instances": [[v1..vF], ...]}
  columnar format  {"inputs": {name: [v, ...], ...}}          or   {"inputs": [[v1..vF], ...]}
A value is a number for a float or int feature, one of the schema's `categories` (a string) for
a category feature, and null for a missing value where the feature is `nullable`. Every feature
is required in every row, nullable ones too (as TF Serving requires every named input): a
missing value is sent as null, never left out. Each value becomes the model's input through the
contract's encoding (contract/schema.py: a category its index, null NaN). Unlike TF Serving,
NaN and Infinity are refused: a tabular model answers garbage for them.
"""
from __future__ import annotations

import json
import operator
from dataclasses import dataclass
from itertools import chain

import numpy as np
import orjson

from contract.errors import InputError
from contract.schema import FLOAT32_MAX, Schema

DEFAULT_SIGNATURE = "serving_default"
NUMBER_TYPES = frozenset((int, float))


class InvalidRequest(ValueError):
    """A 400: the request cannot be answered as it is."""


def _refuse_constant(name: str):
    raise InvalidRequest(f"JSON Parse error: {name} is not accepted: the model needs finite "
                         f"numbers (TF Serving takes NaN and Infinity; this service refuses "
                         f"them)")


def _name_refused_constant(body: bytes) -> None:
    """orjson refuses NaN and Infinity like any other bad token; the json module tells them
    apart (only on this error path, so its speed does not matter)."""
    try:
        json.loads(body, parse_constant=_refuse_constant)
    except InvalidRequest:
        raise
    except (ValueError, RecursionError):
        pass  # not NaN or Infinity: orjson's message says what is wrong


def parse_json(body: bytes) -> dict:
    """The request body as a JSON object (TF Serving's checks and messages)."""
    if not body.strip():
        raise InvalidRequest("JSON Parse error: The document is empty")
    try:
        # orjson: four times faster than the json module on a 1024-row request.
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        _name_refused_constant(body)
        raise InvalidRequest(f"JSON Parse error: {error}") from None
    if not isinstance(document, dict):
        raise InvalidRequest(f"JSON Value: {_json_type(document)} Is not object: the body must "
                             f"be an object with 'instances' or 'inputs'")
    return document


def signature_name(document: dict) -> str:
    name = document.get("signature_name", "")
    if not isinstance(name, str):
        raise InvalidRequest(f"'signature_name' key must be a string, not "
                             f"{_json_type(name)}")
    return name or DEFAULT_SIGNATURE


@dataclass(frozen=True)
class Batch:
    rows: np.ndarray   # float32 [N, F], features in schema order
    columnar: bool     # the answer mirrors the request: {"outputs": ...} or {"predictions": ...}


class BatchParser:
    """Turns the `instances` or `inputs` of a parsed body into a Batch, for one schema."""

    def __init__(self, schema: Schema, max_rows: int):
        self.schema = schema
        self.max_rows = max_rows
        self.names = schema.feature_names
        self._name_set = frozenset(self.names)
        self._values_of = operator.itemgetter(*self.names)
        features = schema.features
        # The fast paths' bounds: the schema's range within float32's, one comparison each.
        self._low = np.array([-FLOAT32_MAX if f.minimum is None else max(f.minimum, -FLOAT32_MAX)
                              for f in features])
        self._high = np.array([FLOAT32_MAX if f.maximum is None else min(f.maximum, FLOAT32_MAX)
                               for f in features])
        # None where no feature needs the check: the numbers-only path runs on every request.
        self._integer = np.array([f.dtype == "int" for f in features]) \
            if any(f.dtype == "int" for f in features) else None
        self._nullable = np.array([f.nullable for f in features]) \
            if any(f.nullable for f in features) else None
        # Numbers only, never null: the whole batch becomes one array in one step.
        self._all_numbers = not any(f.is_category or f.nullable for f in features)
        # Otherwise, column by column: a category through a table of the contract's own
        # encodings of its values (and of null), a number column by the types it may hold.
        self._columns = [
            ({value: f.encode(value) for value in f.categories + (None,) * f.nullable}, None)
            if f.is_category else (None, NUMBER_TYPES | {type(None)} if f.nullable
                                   else NUMBER_TYPES)
            for f in features]
        self._encoders = [f.encode for f in features]

    def parse(self, document: dict) -> Batch:
        has_instances, has_inputs = "instances" in document, "inputs" in document
        if has_instances and has_inputs:
            raise InvalidRequest("Not formatted correctly expecting only one of 'inputs' or "
                                 "'instances' keys to exist")
        if has_instances:
            return Batch(self._instances(document["instances"]), columnar=False)
        if has_inputs:
            return Batch(self._inputs(document["inputs"]), columnar=True)
        raise InvalidRequest("Missing 'inputs' or 'instances' key")

    def _instances(self, instances) -> np.ndarray:
        if not isinstance(instances, list):
            raise InvalidRequest("Expecting 'instances' to be a list")
        if not instances:
            raise InvalidRequest("No values in 'instances' array")
        self._check_count(len(instances), "'instances'")
        if isinstance(instances[0], dict):
            # The fast path, in C: every row yields every name (a KeyError or, for a row that
            # is no object, a TypeError otherwise) and holds no other key (its length).
            try:
                rows = list(map(self._values_of, instances))
            except (KeyError, TypeError):
                rows = None
            if rows is None or set(map(len, instances)) != {len(self.names)}:
                self._refuse_named(instances)
            if len(self.names) == 1:
                rows = [(value,) for value in rows]  # itemgetter of one name gives no tuple
            return self._to_array(rows, "instances")
        for index, instance in enumerate(instances):
            if not isinstance(instance, list):
                raise InvalidRequest(f"Expecting a list of {len(self.names)} values or an "
                                     f"object keyed by feature name, got {_json_type(instance)} "
                                     f"at item {index} of 'instances'")
        return self._plain_rows(instances, "instances")

    def _refuse_named(self, instances: list):
        for index, instance in enumerate(instances):
            if not isinstance(instance, dict):
                raise InvalidRequest(f"Expecting object but got {_json_type(instance)} at "
                                     f"item {index} of input list")
            if instance.keys() != self._name_set:
                raise InvalidRequest(f"Failed to process element: {index} of 'instances' "
                                     f"list. {self._key_problem(instance.keys())}")

    def _inputs(self, inputs) -> np.ndarray:
        if isinstance(inputs, list):
            if not inputs:
                raise InvalidRequest("No values in 'inputs' array")
            self._check_count(len(inputs), "'inputs'")
            for index, row in enumerate(inputs):
                if not isinstance(row, list):
                    raise InvalidRequest(f"'inputs' must be a list of rows of "
                                         f"{len(self.names)} values ([N, {len(self.names)}]), "
                                         f"but item {index} is {_json_type(row)}")
            return self._plain_rows(inputs, "inputs")
        if not isinstance(inputs, dict):
            raise InvalidRequest(f"'inputs' must be an object keyed by feature name or a list "
                                 f"of rows, not {_json_type(inputs)}")
        for name in self.names:
            if name not in inputs:
                raise InvalidRequest(f"Missing named input: {name} in 'inputs' object.")
        if inputs.keys() != self._name_set:
            raise InvalidRequest(f"'inputs' object: {self._key_problem(inputs.keys())}")
        columns = [inputs[name] for name in self.names]
        for name, column in zip(self.names, columns):
            if not isinstance(column, list):
                raise InvalidRequest(f"named input '{name}' must be a list with one value per "
                                     f"row, not {_json_type(column)}")
        count = len(columns[0])
        if count == 0:
            raise InvalidRequest(f"No values in named input '{self.names[0]}'")
        self._check_count(count, "'inputs'")
        for name, column in zip(self.names, columns):
            if len(column) != count:
                raise InvalidRequest(f"Expecting tensor size: {count} but got: {len(column)} "
                                     f"(named input '{name}'; every input needs one value per "
                                     f"row)")
        return self._to_array(zip(*columns), "inputs")

    def _plain_rows(self, rows: list, key: str) -> np.ndarray:
        expected = len(self.names)
        for index, row in enumerate(rows):
            if len(row) != expected:
                raise InvalidRequest(f"Expecting tensor size: {expected} but got: {len(row)} "
                                     f"(item {index} of '{key}' must hold one value per "
                                     f"feature, in schema order: {', '.join(self.names)})")
        return self._to_array(rows, key)

    def _check_count(self, count: int, what: str) -> None:
        if count > self.max_rows:
            raise InvalidRequest(f"{what} has {count} rows, more than this service takes in one "
                                 f"request (MAX_ROWS={self.max_rows}): split it")

    def _key_problem(self, keys) -> str:
        missing = [name for name in self.names if name not in keys]
        unknown = sorted(str(key) for key in keys if key not in self._name_set)
        parts = []
        if missing:
            parts.append("missing feature(s): " + ", ".join(repr(name) for name in missing))
        if unknown:
            parts.append("unknown feature(s): " + ", ".join(repr(name) for name in unknown))
        return "; ".join(parts) + f" (the features are: {', '.join(self.names)})"

    def _to_array(self, rows, key: str) -> np.ndarray:
        """`rows` (each holding the features in schema order) as float32 [N, F]. The fast
        paths build the array and check it at once; when a value fails them, the exact path
        encodes value by value and says which and why."""
        flat = list(chain.from_iterable(rows))
        values = self._numbers(flat) if self._all_numbers else self._by_column(flat)
        if values is not None and self._valid(values):
            return values.astype(np.float32)
        return self._encode(flat, key)

    def _numbers(self, flat: list) -> np.ndarray | None:
        """A schema of numbers only: one pass over the types in C, one array."""
        if not set(map(type, flat)) <= NUMBER_TYPES:
            return None
        return np.array(flat, dtype=np.float64).reshape(-1, len(self.names))

    def _by_column(self, flat: list) -> np.ndarray | None:
        width = len(self.names)
        values = np.empty((len(flat) // width, width))
        for column, (table, types) in enumerate(self._columns):
            cells = flat[column::width]
            if table is not None:
                try:
                    values[:, column] = list(map(table.__getitem__, cells))
                except (KeyError, TypeError):  # not one of the categories, or unhashable
                    return None
            elif set(map(type, cells)) <= types:
                values[:, column] = np.array(cells, dtype=np.float64)  # null: NaN
            else:
                return None
        return values

    def _valid(self, values: np.ndarray) -> bool:
        """The contract's checks of a number, on the whole batch at once (orjson gives finite
        floats and int64s only: it refuses 1e999 and NaN)."""
        inside = (values >= self._low) & (values <= self._high)
        if self._integer is not None:
            inside &= ~self._integer | (values == np.floor(values))
        if self._nullable is not None:
            inside |= self._nullable & np.isnan(values)
        return bool(inside.all())

    def _encode(self, flat: list, key: str) -> np.ndarray:
        """The exact path: every value through its feature's encoding, the first refusal
        named with its row and feature."""
        width, encoders = len(self.names), self._encoders
        encoded = []
        for position, value in enumerate(flat):
            try:
                encoded.append(encoders[position % width](value))
            except InputError as problem:
                row, column = divmod(position, width)
                raise InvalidRequest(f"feature '{self.names[column]}' of item {row} of "
                                     f"'{key}': {problem}") from None
        return np.array(encoded, dtype=np.float32).reshape(-1, width)


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
