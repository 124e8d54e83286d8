"""Real rows for the service's tests: the active data set's (or any CSV's) rows as a client
sends them, and the model input the service must build from them."""
from __future__ import annotations

import csv
from pathlib import Path

from contract.schema import Schema

ROOT = Path(__file__).resolve().parents[1]


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
