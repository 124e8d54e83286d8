"""The data schema (data/schema.json): the task, the target and its labels, the features with
their types, categories, valid ranges and whether they may be missing.

Pure standard library, because the service imports it too and its image has no TensorFlow
or numpy. One schema drives training validation, request validation, the OpenAPI document
and the try-it page.

The model's input convention lives here, once: every feature is one float32 column, in schema
order. A number is itself; a category is the 0-based index of its value in `categories`; a
missing value (an empty CSV cell, a JSON null; only where `nullable`) is NaN. Imputation,
one-hot encoding and scaling happen inside the model. `Feature.encode` (a JSON value) and
`Feature.parse_cell` (a CSV cell) are the only ways a value becomes a model input.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from contract.errors import InputError, in_file

TASKS = ("binary", "multiclass", "regression")
FLOAT32_MAX = 3.4028234663852886e38  # the model's input is float32
DTYPES = ("float", "int", "category")
REQUIRED = {"binary": ("features", "target", "labels", "positive_label"),
            "multiclass": ("features", "target", "labels"),
            "regression": ("features", "target")}


@dataclass(frozen=True)
class Feature:
    name: str
    dtype: str
    minimum: float | None = None
    maximum: float | None = None
    description: str = ""
    categories: tuple[str, ...] = ()  # category only, in the order of their indices
    nullable: bool = False

    @property
    def is_category(self) -> bool:
        return self.dtype == "category"

    def problem(self, value: float) -> str | None:
        """Why the number `value` is not valid for this numeric feature, or None when it is."""
        if not math.isfinite(value):
            return f"{value} is not a finite number"
        if abs(value) > FLOAT32_MAX:
            return f"{value} is too large for float32, the model's input type"
        if self.dtype == "int" and value != int(value):
            return f"{value} is not a whole number"
        if self.minimum is not None and value < self.minimum:
            return f"{value} is below the minimum {self.minimum}"
        if self.maximum is not None and value > self.maximum:
            return f"{value} is above the maximum {self.maximum}"
        return None

    def encode(self, value) -> float:
        """A JSON value (None, a number, or for a category its string) as the model's input
        for this feature; an InputError that says why not (the caller names the feature)."""
        if value is None:
            if self.nullable:
                return math.nan
            return self._refuse("a value is required (the feature is not nullable)")
        if self.is_category:
            return self._category_index(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return self._refuse(f"expected a number, got {_json_type(value)} {value!r}")
        try:
            problem = self.problem(float(value))
        except OverflowError:
            problem = f"{value} is too large for float32, the model's input type"
        if problem:
            return self._refuse(problem)
        return float(value)

    def parse_cell(self, cell: str) -> float:
        """A CSV cell as the model's input for this feature (an empty cell is missing)."""
        text = cell.strip()
        if not text:
            if self.nullable:
                return math.nan
            return self._refuse("empty cell (a value is required: the feature is not "
                                "nullable)")
        if self.is_category:
            return self._category_index(text)
        try:
            value = float(text)
        except ValueError:
            return self._refuse(f"{text!r} is not a number")
        return self.encode(value)

    def decode(self, value: float):
        """The JSON value a model input stands for: the inverse of `encode`."""
        if math.isnan(value):
            return None
        if self.is_category:
            return self.categories[int(value)]
        return int(value) if self.dtype == "int" else float(value)

    def _category_index(self, value) -> float:
        if isinstance(value, str) and value in self.categories:
            return float(self.categories.index(value))
        # A number for a category spelled like one ("4" for 4) is that category.
        if (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value)):
            text = str(int(value)) if value == int(value) else str(value)
            if text in self.categories:
                return float(self.categories.index(text))
        allowed = ", ".join(repr(c) for c in self.categories)
        return self._refuse(f"unknown category {value!r} (allowed: {allowed}"
                            f"{'; or empty/null for missing' if self.nullable else ''})")

    @staticmethod
    def _refuse(problem: str):
        raise InputError(problem)


@dataclass(frozen=True)
class Schema:
    features: tuple[Feature, ...]
    target: str
    labels: tuple[str, ...]          # the output order; empty for regression
    positive_label: str | None = None  # binary only
    task: str = "binary"
    key: str | None = None  # a column that identifies a row: its split follows from it

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def negative_label(self) -> str:
        return next(label for label in self.labels if label != self.positive_label)

    @property
    def outputs(self) -> tuple[str, ...]:
        """What each column of the model's output is: binary the positive label's
        probability, multiclass one probability per label, regression the target's value."""
        if self.task == "binary":
            return (self.positive_label,)
        if self.task == "multiclass":
            return self.labels
        return (self.target,)

    @property
    def class_labels(self) -> tuple[str, ...]:
        """The label of each class index a classification target holds (binary: 0 is the
        negative label, 1 the positive one)."""
        if self.task == "binary":
            return self.negative_label, self.positive_label
        return self.labels

    def encode_target(self, cell: str) -> float:
        """A CSV target cell as the training target: binary 1 for the positive label and 0
        for the other, multiclass the label's index, regression the number."""
        text = cell.strip()
        if self.task == "regression":
            try:
                value = float(text)
            except ValueError:
                raise InputError(f"{text!r} is not a number (the task is regression)") from None
            if not math.isfinite(value):
                raise InputError(f"{text!r} is not a finite number")
            return value
        if text not in self.labels:
            raise InputError(f"unknown label {text!r} (expected one of "
                             f"{', '.join(self.labels)})")
        if self.task == "binary":
            return float(text == self.positive_label)
        return float(self.labels.index(text))

    @classmethod
    def load(cls, path: str | Path) -> Schema:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise InputError(f"{path}: cannot read the schema ({e.strerror})") from e
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from e
        with in_file(path):
            return cls.from_dict(data)

    @classmethod
    def from_dict(cls, d: dict) -> Schema:
        if not isinstance(d, dict):
            raise InputError("the schema must be a JSON object")
        task = d.get("task", "binary")
        if task not in TASKS:
            raise InputError(f"the schema's task must be one of {', '.join(TASKS)}, not "
                             f"{task!r}")
        missing = [k for k in REQUIRED[task] if k not in d]
        if missing:
            raise InputError(f"the schema lacks {', '.join(missing)} (task {task})")
        if not isinstance(d["features"], list) or not d["features"]:
            raise InputError("the schema's features must be a non-empty list")
        features = tuple(_feature(i, f) for i, f in enumerate(d["features"]))
        names = [f.name for f in features]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise InputError(f"the schema names a feature twice: {', '.join(duplicates)}")
        target = d["target"]
        if not isinstance(target, str) or not target or target in names:
            raise InputError("the schema's target must be a column name that is not a feature")
        labels = _labels(task, d)
        positive = d.get("positive_label")
        if task == "binary" and positive not in labels:
            raise InputError(f"the schema's positive_label {positive!r} is not one of "
                             f"{list(labels)}")
        if task != "binary" and positive is not None:
            raise InputError(f"the schema's positive_label is for the binary task only "
                             f"(this one is {task})")
        key = d.get("key")
        if key is not None and (not isinstance(key, str) or not key or key in names
                                or key == target):
            raise InputError("the schema's key must be the name of a column that is neither "
                             "a feature nor the target")
        return cls(features, target, labels, positive, task, key)

    def to_dict(self) -> dict:
        d = {"task": self.task, "target": self.target}
        if self.task != "regression":
            d["labels"] = list(self.labels)
        if self.task == "binary":
            d["positive_label"] = self.positive_label
        d["features"] = [_feature_dict(f) for f in self.features]
        if self.key is not None:
            d["key"] = self.key
        return d


def _labels(task: str, d: dict) -> tuple[str, ...]:
    if task == "regression":
        if "labels" in d:
            raise InputError("the schema's labels are for classification; a regression "
                             "schema has none")
        return ()
    labels = d["labels"]
    count = {"binary": "two", "multiclass": "three or more"}[task]
    if (not isinstance(labels, list) or len(set(labels)) != len(labels)
            or not all(isinstance(x, str) and x.strip() == x and x for x in labels)
            or (len(labels) != 2 if task == "binary" else len(labels) < 3)):
        raise InputError(f"the schema's labels must be {count} different non-empty strings "
                         f"for the {task} task, not {labels!r}")
    return tuple(labels)


def _feature(index: int, d: dict) -> Feature:
    where = f"feature {index + 1}"
    if not isinstance(d, dict):
        raise InputError(f"{where} must be a JSON object")
    name = d.get("name")
    if not isinstance(name, str) or not name:
        raise InputError(f"{where} needs a non-empty name")
    where = f"feature {name!r}"
    dtype = d.get("dtype", "float")
    if dtype not in DTYPES:
        raise InputError(f"{where}: dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    bounds = {}
    for key in ("minimum", "maximum"):
        value = d.get(key)
        if value is not None and dtype == "category":
            raise InputError(f"{where}: {key} is for numbers; a category feature has "
                             f"categories")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise InputError(f"{where}: {key} must be a finite number or null, not {value!r}")
        bounds[key] = None if value is None else float(value)
    if None not in bounds.values() and bounds["minimum"] > bounds["maximum"]:
        raise InputError(f"{where}: minimum {bounds['minimum']} is above maximum "
                         f"{bounds['maximum']}")
    categories = d.get("categories")
    if dtype == "category":
        if (not isinstance(categories, list) or not categories
                or not all(isinstance(c, str) and c.strip() == c and c for c in categories)
                or len(set(categories)) != len(categories)):
            raise InputError(f"{where}: a category feature needs categories, a list of "
                             f"different non-empty strings without surrounding spaces, not "
                             f"{categories!r}")
    elif categories is not None:
        raise InputError(f"{where}: categories are for dtype category, not {dtype}")
    nullable = d.get("nullable", False)
    if not isinstance(nullable, bool):
        raise InputError(f"{where}: nullable must be true or false, not {nullable!r}")
    description = d.get("description", "")
    if not isinstance(description, str):
        raise InputError(f"{where}: description must be a string")
    return Feature(name, dtype, bounds["minimum"], bounds["maximum"], description,
                   tuple(categories or ()), nullable)


def _feature_dict(f: Feature) -> dict:
    d = {"name": f.name, "dtype": f.dtype}
    if f.is_category:
        d["categories"] = list(f.categories)
    else:
        d["minimum"], d["maximum"] = f.minimum, f.maximum
    d["nullable"] = f.nullable
    d["description"] = f.description
    return d


def _json_type(value) -> str:
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
