"""Load the CSV and validate every cell against the schema before anything trains on it.

Problems are collected over the whole file and reported together, each with the file, the
line a person opening the file would count (the header is line 1) and the column.
"""
from __future__ import annotations

import csv
import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.errors import InputError
from contract.schema import Schema
from training.split import row_id

# Enough to fix a file in one pass without burying the first problems in a wall of text.
MAX_REPORTED_PROBLEMS = 20


@dataclass(frozen=True)
class Dataset:
    path: str
    sha256: str
    x: np.ndarray  # float32 [rows, features] in schema order, the model's input (see contract)
    y: np.ndarray  # binary int 1 = positive label; multiclass int label index; regression float
    schema: Schema
    ids: np.ndarray  # uint64 [rows], each row's id (training/split.py)

    @property
    def rows(self) -> int:
        return len(self.y)


def load_dataset(path: str | Path, schema: Schema) -> Dataset:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read the data ({e.strerror})") from e
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start})") from e
    x, y, ids = parse_csv(text, schema, str(path))
    return Dataset(str(path), hashlib.sha256(raw).hexdigest(), x, y, schema, ids)


def parse_csv(text: str, schema: Schema,
              name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, targets and row ids from CSV text, or an InputError listing every problem
    found."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None or not any(cell.strip() for cell in header):
        raise InputError(f"{name}: the file is empty; expected a header row with the columns "
                         f"{', '.join(schema.feature_names + (schema.target,))}")
    header = [cell.strip() for cell in header]
    _check_header(header, schema, name)
    columns = [header.index(n) for n in schema.feature_names]
    target_column = header.index(schema.target)
    id_columns = [header.index(schema.key)] if schema.key else columns

    problems: list[str] = []
    features, targets, ids = [], [], []
    start = reader.line_num + 1
    for cells in reader:
        # A quoted cell may span lines: a row is where it starts, line_num is where it ends.
        line, start = start, reader.line_num + 1
        if not cells:
            continue  # a blank line (often the last one) holds no row
        where = f"{name}, line {line}"
        if len(cells) != len(header):
            problems.append(f"{where}: {len(cells)} cells, the header has {len(header)}")
            continue
        row = []
        for feature, column in zip(schema.features, columns):
            try:
                row.append(feature.parse_cell(cells[column]))
            except InputError as e:
                problems.append(f"{where}, column {feature.name!r}: {e}")
                row.append(math.nan)
        try:
            targets.append(schema.encode_target(cells[target_column]))
        except InputError as e:
            problems.append(f"{where}, column {schema.target!r}: {e}")
        if schema.key and not cells[id_columns[0]].strip():
            problems.append(f"{where}, column {schema.key!r}: empty key (the schema's key "
                            "identifies each row)")
        features.append(row)
        ids.append(row_id(cells[column] for column in id_columns))
    if problems:
        raise InputError(_summary(name, problems))
    if not targets:
        raise InputError(f"{name}: the header is there but no data rows follow it")
    y = np.asarray(targets, dtype=np.float64)
    if schema.task != "regression":
        y = y.astype(np.int64)
        if len(set(targets)) < 2:
            raise InputError(f"{name}, column {schema.target!r}: every row is "
                             f"{schema.class_labels[y[0]]!r}; "
                             f"training needs two labels or more ({', '.join(schema.labels)})")
    return np.asarray(features, dtype=np.float32), y, np.asarray(ids, dtype=np.uint64)


def _check_header(header: list[str], schema: Schema, name: str) -> None:
    expected = schema.feature_names + (schema.target,) + ((schema.key,) if schema.key else ())
    missing = [c for c in expected if c not in header]
    extra = [c for c in header if c not in expected]
    repeated = sorted({c for c in header if header.count(c) > 1})
    problems = []
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    if extra:
        problems.append(f"column(s) not in the schema: {', '.join(extra) or 'an unnamed one'}")
    if repeated:
        problems.append(f"column(s) named twice: {', '.join(repeated)}")
    if problems:
        raise InputError(f"{name}, line 1 (header): {'; '.join(problems)}")


def _summary(name: str, problems: list[str]) -> str:
    shown = problems[:MAX_REPORTED_PROBLEMS]
    more = len(problems) - len(shown)
    lines = [f"{name}: {len(problems)} problem(s) in the data:"] + [f"  {p}" for p in shown]
    if more:
        lines.append(f"  ... and {more} more")
    return "\n".join(lines)
