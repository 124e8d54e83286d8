"""The split: a row's part follows from the row (its key, or its feature cells), so it never
moves as the data grows, and the manifest records compactly which rows a model learnt from."""
from __future__ import annotations

import csv
import hashlib
import io
import json

import numpy as np
import pytest

from contract.errors import InputError
from contract.schema import Schema
from training import split
from training.data import load_dataset

from conftest import DATA, SCHEMA

SEED, VALIDATION, TEST = 20260101, 0.15, 0.2
ROWS = list(csv.reader(io.StringIO(DATA.read_text())))  # header first


def write(path, rows):
    with path.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    return path


def parts(dataset) -> dict:
    """Each row's id -> the part it is in."""
    s = split.assign(dataset.ids, dataset.y, SEED, VALIDATION, TEST, {0: "B", 1: "M"})
    return {int(dataset.ids[i]): name for name, rows in
            (("train", s.train), ("validation", s.validation), ("test", s.test)) for i in rows}


def test_the_id_is_the_documented_hash_of_the_cells():
    expected = int.from_bytes(hashlib.sha256("17.99\x1f10.38".encode()).digest()[:8], "big")
    assert split.row_id([" 17.99", "10.38 "]) == expected


def test_the_split_is_deterministic_disjoint_and_complete():
    data = load_dataset(DATA, Schema.load(SCHEMA))
    a = split.assign(data.ids, data.y, SEED, VALIDATION, TEST)
    b = split.assign(data.ids, data.y, SEED, VALIDATION, TEST)
    for left, right in zip((a.train, a.validation, a.test), (b.train, b.validation, b.test)):
        np.testing.assert_array_equal(left, right)
    assert sorted(np.concatenate([a.train, a.validation, a.test])) == list(range(data.rows))
    other = split.assign(data.ids, data.y, SEED + 1, VALIDATION, TEST)
    assert not np.array_equal(other.test, a.test)  # the seed draws another split


def test_every_part_keeps_about_the_class_balance_of_the_whole():
    data = load_dataset(DATA, Schema.load(SCHEMA))
    s = split.assign(data.ids, data.y, SEED, VALIDATION, TEST)
    assert (len(s.train), len(s.validation), len(s.test)) == (381, 81, 107)
    for rows in (s.train, s.validation, s.test):
        assert abs(data.y[rows].mean() - data.y.mean()) < 0.04


def test_the_fractions_hold_on_many_rows():
    ids = np.random.default_rng(0).integers(0, 2 ** 63, 50_000, dtype=np.uint64)
    s = split.assign(ids, np.zeros(len(ids)), SEED, VALIDATION, TEST)
    assert len(s.test) / len(ids) == pytest.approx(TEST, abs=0.005)
    assert len(s.validation) / len(ids) == pytest.approx(VALIDATION, abs=0.005)


def test_no_old_row_moves_when_rows_are_appended_or_reordered(tmp_path):
    schema = Schema.load(SCHEMA)
    first = parts(load_dataset(write(tmp_path / "first.csv", ROWS[:401]), schema))
    grown = ROWS[:1] + ROWS[401:] + ROWS[1:401][::-1]  # 168 new rows first, the old reversed
    after = parts(load_dataset(write(tmp_path / "grown.csv", grown), schema))
    assert len(first) == 400 and len(after) == 569
    assert {i: after[i] for i in first} == first


def test_a_key_column_names_the_row_and_moves_with_it(tmp_path):
    schema = Schema.from_dict({**json.loads(SCHEMA.read_text()), "key": "id"})
    rows = [ROWS[0] + ["id"]] + [row + [f"patient-{n}"] for n, row in enumerate(ROWS[1:])]
    data = load_dataset(write(tmp_path / "keyed.csv", rows), schema)
    assert data.ids[5] == split.row_id(["patient-5"])
    # A corrected feature value does not move the row: its key is the same.
    rows[6][0] = "99.5"
    assert load_dataset(write(tmp_path / "fixed.csv", rows), schema).ids[5] == data.ids[5]
    assert schema.to_dict()["key"] == "id" and Schema.from_dict(schema.to_dict()) == schema


@pytest.mark.parametrize("key", ["mean_radius", "diagnosis", "", 3])
def test_a_key_that_is_a_feature_or_the_target_is_refused(key):
    with pytest.raises(InputError, match="key must be the name of a column that is neither"):
        Schema.from_dict({**json.loads(SCHEMA.read_text()), "key": key})


def test_an_empty_key_cell_is_refused_with_its_line(tmp_path):
    schema = Schema.from_dict({**json.loads(SCHEMA.read_text()), "key": "id"})
    rows = [ROWS[0] + ["id"]] + [row + [str(n)] for n, row in enumerate(ROWS[1:])]
    rows[3][-1] = " "
    with pytest.raises(InputError, match=r"line 4, column 'id': empty key"):
        load_dataset(write(tmp_path / "keyed.csv", rows), schema)


def test_a_class_missing_from_a_part_is_named():
    ids = np.arange(40, dtype=np.uint64)
    y = np.r_[np.zeros(39), 1]
    with pytest.raises(InputError, match="none of the 1 row.s. labelled 'rare' fell in the"):
        split.assign(ids, y, SEED, VALIDATION, TEST, {0: "common", 1: "rare"})


def test_impossible_fractions_are_refused():
    with pytest.raises(ValueError):
        split.assign(np.arange(10, dtype=np.uint64), np.zeros(10), SEED, 0.5, 0.5)


def test_the_record_of_trained_rows_is_compact_and_exact():
    ids = np.random.default_rng(1).integers(0, 2 ** 64 - 1, 1000, dtype=np.uint64)
    record = split.record(np.r_[ids, ids[:10]])  # duplicates are recorded once
    assert record["rows"] == 1010
    assert len(record["row_ids"]) == 4 * -(-8000 // 3)  # 8 bytes a row, in base64
    np.testing.assert_array_equal(split.recorded_ids(record), np.unique(ids))
    with pytest.raises(InputError, match="not the base64 of 8-byte row ids"):
        split.recorded_ids({"row_ids": "AAAA"})
