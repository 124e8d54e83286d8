"""The schema contract: tasks, labels, feature types, categories, missing values, and the one
encoding of a value into the model's input (contract/schema.py)."""
from __future__ import annotations

import json
import math
import re

import pytest

from contract.errors import InputError
from contract.schema import Schema

from conftest import SCHEMA

FEATURES = [
    {"name": "length", "dtype": "float", "minimum": 0, "maximum": 100, "nullable": True},
    {"name": "count", "dtype": "int", "minimum": 0},
    {"name": "island", "dtype": "category", "categories": ["Biscoe", "Dream", "4"],
     "nullable": True, "description": "where"},
    {"name": "sex", "dtype": "category", "categories": ["female", "male"]},
]
SCHEMAS = {
    "binary": {"task": "binary", "target": "y", "labels": ["no", "yes"],
               "positive_label": "yes", "features": FEATURES},
    "multiclass": {"task": "multiclass", "target": "species",
                   "labels": ["Adelie", "Chinstrap", "Gentoo"], "features": FEATURES},
    "regression": {"task": "regression", "target": "price", "features": FEATURES},
}


def schema_of(name: str, **changes) -> dict:
    d = json.loads(json.dumps(SCHEMAS[name]))
    d.update(changes)
    return d


@pytest.mark.parametrize("task", SCHEMAS)
def test_every_task_round_trips(task):
    schema = Schema.from_dict(schema_of(task))
    assert schema.task == task
    assert Schema.from_dict(json.loads(json.dumps(schema.to_dict()))) == schema
    island = schema.features[2]
    assert (island.dtype, island.categories, island.nullable, island.description) == (
        "category", ("Biscoe", "Dream", "4"), True, "where")
    assert schema.features[1].nullable is False


def test_the_outputs_follow_the_task():
    assert Schema.from_dict(schema_of("binary")).outputs == ("yes",)
    assert Schema.from_dict(schema_of("multiclass")).outputs == ("Adelie", "Chinstrap", "Gentoo")
    regression = Schema.from_dict(schema_of("regression"))
    assert (regression.outputs, regression.labels, regression.positive_label) == (
        ("price",), (), None)


def test_a_schema_without_a_task_is_binary():
    d = schema_of("binary")
    del d["task"]
    schema = Schema.from_dict(d)
    assert (schema.task, schema.positive_label, schema.negative_label) == ("binary", "yes", "no")


def test_the_active_schema_loads_and_round_trips():
    schema = Schema.load(SCHEMA)
    assert Schema.from_dict(schema.to_dict()) == schema
    assert schema.feature_names == tuple(f["name"] for f in json.loads(SCHEMA.read_text())
                                         ["features"])


@pytest.mark.parametrize("task, change, message", [
    ("binary", dict(task="ranking"), "task must be one of binary, multiclass, regression"),
    ("binary", dict(labels=["a", "b", "c"]), "labels must be two different"),
    ("binary", dict(labels=["a", "a"]), "labels must be two different"),
    ("binary", dict(positive_label="maybe"), "positive_label 'maybe' is not one of"),
    ("binary", dict(positive_label=None), "positive_label None is not one of"),
    ("multiclass", dict(labels=["a", "b"]), "labels must be three or more different"),
    ("multiclass", dict(labels=["a", "b", ""]), "non-empty strings"),
    ("multiclass", dict(positive_label="a"), "positive_label is for the binary task only"),
    ("regression", dict(labels=["a", "b"]), "a regression schema has none"),
    ("multiclass", dict(target="length"), "not a feature"),
    ("binary", dict(features=[]), "non-empty list"),
])
def test_a_broken_schema_is_refused_with_the_reason(task, change, message):
    with pytest.raises(InputError, match=message):
        Schema.from_dict(schema_of(task, **change))


@pytest.mark.parametrize("missing, message", [
    ("target", "lacks target"), ("labels", "lacks labels (task multiclass)")])
def test_a_schema_lacking_what_its_task_needs_says_so(missing, message):
    d = schema_of("multiclass")
    del d[missing]
    with pytest.raises(InputError, match=re.escape(message)):
        Schema.from_dict(d)


@pytest.mark.parametrize("feature, message", [
    ({"name": "a", "dtype": "str"}, "dtype must be one of float, int, category"),
    ({"name": "a", "dtype": "category"}, "needs categories"),
    ({"name": "a", "dtype": "category", "categories": ["x", "x"]}, "needs categories"),
    ({"name": "a", "dtype": "category", "categories": ["x", ""]}, "needs categories"),
    ({"name": "a", "dtype": "category", "categories": ["x", 1]}, "needs categories"),
    ({"name": "a", "dtype": "category", "categories": ["x"], "minimum": 0}, "is for numbers"),
    ({"name": "a", "dtype": "float", "categories": ["x"]}, "categories are for dtype category"),
    ({"name": "a", "nullable": "yes"}, "nullable must be true or false"),
    ({"name": "a", "minimum": "0"}, "minimum must be a finite number"),
    ({"name": "a", "minimum": 5, "maximum": 1}, "minimum 5.0 is above maximum"),
    ({"dtype": "float"}, "feature 1 needs a non-empty name"),
])
def test_a_broken_feature_is_refused_with_its_name(feature, message):
    with pytest.raises(InputError, match=message):
        Schema.from_dict(schema_of("regression", features=[feature]))


def test_a_broken_schema_file_names_the_file(tmp_path):
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema_of("binary", labels=["a"])))
    with pytest.raises(InputError) as e:
        Schema.load(path)
    assert str(e.value).startswith(f"{path}: the schema's labels")
    path.write_text('{\n  "features": [,]\n}')
    with pytest.raises(InputError, match="line 2: not valid JSON"):
        Schema.load(path)


# One value into the model's input

@pytest.fixture(scope="module")
def features():
    return {f.name: f for f in Schema.from_dict(schema_of("binary")).features}


def test_values_encode_as_the_model_expects(features):
    assert features["length"].encode(3.5) == 3.5
    assert features["count"].encode(7) == 7.0
    assert features["island"].encode("Dream") == 1.0
    assert features["island"].encode(4) == 2.0  # a category spelled as a number
    assert math.isnan(features["length"].encode(None))
    assert math.isnan(features["island"].encode(None))
    assert features["length"].parse_cell(" 3.5 ") == 3.5
    assert features["island"].parse_cell("Biscoe") == 0.0
    assert math.isnan(features["island"].parse_cell(""))
    assert math.isnan(features["length"].parse_cell("  "))


def test_decode_inverts_encode(features):
    for name, value in [("length", 3.5), ("count", 7), ("island", "Dream"), ("island", None),
                        ("sex", "male"), ("length", None)]:
        feature = features[name]
        assert feature.decode(feature.encode(value)) == value
    assert type(features["count"].decode(7.0)) is int


@pytest.mark.parametrize("name, value, message", [
    ("count", None, "a value is required (the feature is not nullable)"),
    ("sex", None, "a value is required"),
    ("sex", "Male", "unknown category 'Male' (allowed: 'female', 'male')"),
    ("island", "Torgersen", "allowed: 'Biscoe', 'Dream', '4'; or empty/null for missing"),
    ("island", 5, "unknown category 5"),
    ("island", True, "unknown category True"),
    ("count", 3.5, "3.5 is not a whole number"),
    ("count", -1, "-1.0 is below the minimum 0.0"),
    ("length", 101, "101.0 is above the maximum 100.0"),
    ("length", "3.5", "expected a number, got a string '3.5'"),
    ("length", True, "expected a number, got a boolean"),
    ("length", [1], "expected a number, got an array"),
    ("count", 1e39, "too large for float32"),
    ("count", 10 ** 400, "too large for float32"),
    ("length", math.inf, "not a finite number"),
])
def test_a_bad_value_is_refused_with_the_reason(features, name, value, message):
    with pytest.raises(InputError, match=re.escape(message)):
        features[name].encode(value)


@pytest.mark.parametrize("name, cell, message", [
    ("count", "", "empty cell (a value is required: the feature is not nullable)"),
    ("sex", " ", "empty cell"),
    ("length", "abc", "'abc' is not a number"),
    ("length", "nan", "nan is not a finite number"),
    ("sex", "other", "unknown category 'other'"),
    ("count", "2.5", "2.5 is not a whole number"),
])
def test_a_bad_cell_is_refused_with_the_reason(features, name, cell, message):
    with pytest.raises(InputError, match=re.escape(message)):
        features[name].parse_cell(cell)


def test_targets_encode_per_task():
    binary = Schema.from_dict(schema_of("binary", labels=["yes", "no"]))
    assert [binary.encode_target(c) for c in ("yes", " no ")] == [1.0, 0.0]
    multiclass = Schema.from_dict(schema_of("multiclass"))
    assert [multiclass.encode_target(c) for c in ("Gentoo", "Adelie")] == [2.0, 0.0]
    regression = Schema.from_dict(schema_of("regression"))
    assert regression.encode_target("-1.5e3") == -1500.0
    for schema, cell, message in [
            (multiclass, "Emperor", "unknown label 'Emperor' (expected one of Adelie, "
                                    "Chinstrap, Gentoo)"),
            (binary, "", "unknown label ''"),
            (regression, "cheap", "'cheap' is not a number (the task is regression)"),
            (regression, "inf", "'inf' is not a finite number")]:
        with pytest.raises(InputError, match=re.escape(message)):
            schema.encode_target(cell)
