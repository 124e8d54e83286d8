"""The train/validation/test split: which part a row belongs to is a property of the row.

A row's id is the first 8 bytes of the sha256 of its key column's value, when the schema names
one (`"key": "<column>"`), or else of its feature cells as the CSV writes them (stripped, joined
by the unit separator U+001F). Its place is the first 8 bytes of sha256(seed, id) read as a
number in [0, 1): below the test fraction it is a test row, below test + validation a
validation row, else a training row. So a row keeps its part whatever rows are added, removed
or reordered around it, rows with the same key (or the same features) always share a part, and
every class is spread over the parts in the same proportions on average.
"""
from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from contract.errors import InputError

ID_BYTES = 8
SEPARATOR = "\x1f"


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # row indices, sorted
    validation: np.ndarray
    test: np.ndarray


def row_id(cells: Iterable[str]) -> int:
    """The row's id from its key cell, or from its feature cells in schema order."""
    text = SEPARATOR.join(cell.strip() for cell in cells)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:ID_BYTES], "big")


def place(ids: np.ndarray, seed: int) -> np.ndarray:
    """Each row's place in [0, 1), from its id and the seed alone."""
    key = seed.to_bytes(ID_BYTES, "big", signed=True)
    return np.array([int.from_bytes(hashlib.sha256(key + int(i).to_bytes(ID_BYTES, "big"))
                                    .digest()[:ID_BYTES], "big") for i in ids],
                    dtype=np.float64) / 2.0 ** 64


def assign(ids: np.ndarray, y: np.ndarray, seed: int, validation_fraction: float,
           test_fraction: float, classes: dict | None = None) -> Split:
    """The rows of each part. `classes` (label index -> name) for a classification task: each
    class must have a row in every part."""
    if not (0 < validation_fraction < 1 and 0 < test_fraction < 1
            and validation_fraction + test_fraction < 1):
        raise ValueError("validation and test fractions must be in (0, 1) and sum below 1")
    where = place(ids, seed)
    parts = Split(np.flatnonzero(where >= test_fraction + validation_fraction),
                  np.flatnonzero((where >= test_fraction)
                                 & (where < test_fraction + validation_fraction)),
                  np.flatnonzero(where < test_fraction))
    for name, rows in (("training", parts.train), ("validation", parts.validation),
                       ("test", parts.test)):
        if not len(rows):
            raise InputError(f"no row fell in the {name} split ({len(ids)} rows): add rows")
        for label, label_name in (classes or {}).items():
            if not np.any(y[rows] == label):
                raise InputError(
                    f"none of the {int(np.sum(y == label))} row(s) labelled {label_name!r} fell "
                    f"in the {name} split (a row's split follows from its hash): add rows of "
                    "that label, so that every split has some")
    return parts


def record(ids: np.ndarray) -> dict:
    """The manifest's compact record of the rows a model learnt from (training and
    validation): their ids, sorted, 8 bytes each, base64."""
    unique = np.unique(ids.astype(np.uint64))
    return {"rows": int(len(ids)),
            "row_ids": base64.b64encode(unique.astype(">u8").tobytes()).decode("ascii")}


def recorded_ids(trained_on: dict) -> np.ndarray:
    """The ids `record` wrote."""
    try:
        raw = base64.b64decode(trained_on["row_ids"], validate=True)
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"trained_on.row_ids is not the base64 of 8-byte row ids ({e})") \
            from None
    if len(raw) % ID_BYTES:
        raise InputError("trained_on.row_ids is not the base64 of 8-byte row ids")
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64)
