"""Small models of every task for the service's tests, independent of the active data set: a
schema with categories and nullable features, a Keras model that takes the contract's input
(a category's index, NaN for a missing value) and gives the task's output, exported by
training's own exporter into a model directory with its manifest. Also the active data set's
real rows, as JSON values."""
from __future__ import annotations

import csv
import datetime
import json
from pathlib import Path

from contract.schema import Schema

ROOT = Path(__file__).resolve().parents[1]

SCHEMAS = {
    "binary": {
        "task": "binary", "target": "churned", "labels": ["no", "yes"], "positive_label": "yes",
        "features": [
            {"name": "plan", "dtype": "category", "categories": ["basic", "plus", "pro"]},
            {"name": "months", "dtype": "int", "minimum": 0, "maximum": 120},
            {"name": "monthly_spend", "dtype": "float", "minimum": 0, "nullable": True}]},
    "multiclass": {
        "task": "multiclass", "target": "species", "labels": ["Adelie", "Chinstrap", "Gentoo"],
        "features": [
            {"name": "island", "dtype": "category",
             "categories": ["Biscoe", "Dream", "Torgersen"]},
            {"name": "bill_length_mm", "dtype": "float", "minimum": 10, "maximum": 100,
             "nullable": True, "description": "Bill length"},
            {"name": "sex", "dtype": "category", "categories": ["female", "male"],
             "nullable": True},
            {"name": "year", "dtype": "int", "minimum": 2007, "maximum": 2009}]},
    "regression": {
        "task": "regression", "target": "price",
        "features": [
            {"name": "rooms", "dtype": "int", "minimum": 1, "maximum": 20},
            {"name": "area", "dtype": "float", "minimum": 0, "maximum": 1000},
            # categories spelled like numbers: a JSON 10 is the category "10"
            {"name": "district", "dtype": "category", "categories": ["1", "2", "10"],
             "nullable": True}]},
}

# Rows of JSON values for each task, every category and a null in each nullable feature.
ROWS = {
    "binary": [{"plan": plan, "months": months, "monthly_spend": spend}
               for plan in ("basic", "plus", "pro")
               for months, spend in ((0, 10.5), (24, None), (120, 99.0))],
    "multiclass": [{"island": island, "bill_length_mm": length, "sex": sex, "year": year}
                   for island in ("Biscoe", "Dream", "Torgersen")
                   for length, sex, year in ((39.1, "male", 2007), (None, "female", 2008),
                                             (50.3, None, 2009))],
    "regression": [{"rooms": rooms, "area": area, "district": district}
                   for district in ("1", "2", "10", None)
                   for rooms, area in ((1, 30.0), (4, 95.5), (20, 1000.0))],
}


def write_model(schema: Schema, example: dict, directory: Path) -> Path:
    """A model of the schema's task into `directory`: missing values as 0, then one dense
    layer with the task's activation; model.tflite, model.keras and manifest.json."""
    import keras

    from training import export

    width = len(schema.outputs)
    inputs = keras.Input((len(schema.features),))
    known = keras.ops.where(keras.ops.not_equal(inputs, inputs), 0.0, inputs)
    activation = {"binary": "sigmoid", "multiclass": "softmax", "regression": None}[schema.task]
    # a regression value far from [0, 1], as prices are: a probability check would catch it
    outputs = keras.layers.Dense(width, activation=activation,
                                 kernel_initializer=keras.initializers.RandomNormal(
                                     stddev=0.01, seed=7),
                                 bias_initializer=keras.initializers.Constant(
                                     100.0 if schema.task == "regression" else 0.0))(known)
    model = keras.Model(inputs, outputs)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.tflite").write_bytes(export.to_tflite(model))
    model.save(directory / "model.keras")
    manifest = export.manifest(directory, {}, schema.to_dict(), {}, example,
                               datetime.datetime.now(datetime.timezone.utc))
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return directory


def active_data() -> tuple[Schema, Path]:
    """The active data set: data/schema.json and the one CSV next to it."""
    schema = Schema.load(ROOT / "data" / "schema.json")
    [path] = sorted((ROOT / "data").glob("*.csv"))
    return schema, path


def real_rows(schema: Schema, path: Path, count: int) -> list[dict]:
    """`count` rows spread over the CSV (a file sorted by its target shows every class), as a
    client sends them: JSON values keyed by feature name, through the contract's own reading
    of a cell."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    rows = rows[::max(1, len(rows) // count)][:count]
    return [{f.name: f.decode(f.parse_cell(row[f.name])) for f in schema.features}
            for row in rows]


def encoded(schema: Schema, rows: list[dict]) -> list[list[float]]:
    """The model's input for rows of JSON values (what the service must build from them)."""
    return [[f.encode(row[f.name]) for f in schema.features] for row in rows]


def task_model_dir(tmp_path_factory, task: str) -> Path:
    """The small model of `task`, written once per test session."""
    directory = tmp_path_factory.getbasetemp() / "service-tasks" / task
    if not (directory / "manifest.json").exists():
        write_model(Schema.from_dict(SCHEMAS[task]), ROWS[task][1], directory)
    return directory
