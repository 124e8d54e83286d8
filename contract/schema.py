"""The data schema (data/schema.json): feature names, types, valid ranges, target and labels.

Pure standard library, because the service imports it too and its image has no TensorFlow
or numpy. One schema drives training validation, request validation, the OpenAPI document
and the try-it page.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from contract.errors import InputError, in_file

DTYPES = ("float", "int")


@dataclass(frozen=True)
class Feature:
    name: str
    dtype: str
    minimum: float | None
    maximum: float | None
    description: str

    def problem(self, value: float) -> str | None:
        """Why `value` is not valid for this feature, or None when it is."""
        if not math.isfinite(value):
            return f"{value} is not a finite number"
        if self.dtype == "int" and value != int(value):
            return f"{value} is not a whole number"
        if self.minimum is not None and value < self.minimum:
            return f"{value} is below the minimum {self.minimum}"
        if self.maximum is not None and value > self.maximum:
            return f"{value} is above the maximum {self.maximum}"
        return None


@dataclass(frozen=True)
class Schema:
    features: tuple[Feature, ...]
    target: str
    labels: tuple[str, ...]
    positive_label: str

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def negative_label(self) -> str:
        return next(label for label in self.labels if label != self.positive_label)

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
        missing = [k for k in ("features", "target", "labels", "positive_label") if k not in d]
        if missing:
            raise InputError(f"the schema lacks {', '.join(missing)}")
        if not isinstance(d["features"], list) or not d["features"]:
            raise InputError("the schema's features must be a non-empty list")
        features = tuple(_feature(i, f) for i, f in enumerate(d["features"]))
        names = [f.name for f in features]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise InputError(f"the schema names a feature twice: {', '.join(duplicates)}")
        target, labels, positive = d["target"], d["labels"], d["positive_label"]
        if not isinstance(target, str) or not target or target in names:
            raise InputError("the schema's target must be a column name that is not a feature")
        if (not isinstance(labels, list) or len(labels) != 2 or len(set(labels)) != 2
                or not all(isinstance(x, str) and x for x in labels)):
            raise InputError("the schema's labels must be two different strings")
        if positive not in labels:
            raise InputError(f"the schema's positive_label {positive!r} is not one of {labels}")
        return cls(features, target, tuple(labels), positive)

    def to_dict(self) -> dict:
        return {
            "features": [
                {"name": f.name, "dtype": f.dtype, "minimum": f.minimum, "maximum": f.maximum,
                 "description": f.description}
                for f in self.features
            ],
            "target": self.target,
            "labels": list(self.labels),
            "positive_label": self.positive_label,
        }


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
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise InputError(f"{where}: {key} must be a finite number or null, not {value!r}")
        bounds[key] = None if value is None else float(value)
    if None not in bounds.values() and bounds["minimum"] > bounds["maximum"]:
        raise InputError(f"{where}: minimum {bounds['minimum']} is above maximum "
                         f"{bounds['maximum']}")
    description = d.get("description", "")
    if not isinstance(description, str):
        raise InputError(f"{where}: description must be a string")
    return Feature(name, dtype, bounds["minimum"], bounds["maximum"], description)
