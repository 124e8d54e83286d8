"""The schema and the data validation: every bad input stops with file, line and column."""
from __future__ import annotations

import copy
import csv
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.__main__ import main, the_csv
from training.data import MAX_REPORTED_PROBLEMS, load_dataset, parse_csv
from contract.errors import InputError
from contract.schema import Schema

from conftest import DATA, SCHEMA

ROWS = list(csv.reader(io.StringIO(DATA.read_text())))  # header first


@pytest.fixture(scope="module")
def schema() -> Schema:
    return Schema.load(SCHEMA)


def write(tmp_path, rows, name="bad.csv"):
    path = tmp_path / name
    with path.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    return path


def rows_with(column: str, line: int, value: str) -> list[list[str]]:
    """The real data with one cell replaced; `line` counts as a person reading the file does."""
    rows = copy.deepcopy(ROWS)
    rows[line - 1][rows[0].index(column)] = value
    return rows


def problem(tmp_path, schema, rows) -> str:
    with pytest.raises(InputError) as e:
        load_dataset(write(tmp_path, rows), schema)
    return str(e.value)


# The schema

def test_schema_loads_the_committed_file_and_round_trips(schema):
    assert len(schema.features) == 30
    assert schema.feature_names[:2] == ("mean_radius", "mean_texture")
    assert (schema.target, schema.labels, schema.positive_label) == (
        "diagnosis", ("benign", "malignant"), "malignant")
    assert schema.negative_label == "benign"
    assert Schema.from_dict(schema.to_dict()) == schema
    # Valid ranges are physical bounds, wider than what the data shows.
    assert all(f.minimum == 0 and f.maximum is not None for f in schema.features)


def test_the_committed_data_is_valid_and_matches_its_description(schema):
    data = load_dataset(DATA, schema)
    assert data.x.shape == (569, 30) and data.x.dtype == np.float32
    assert (int(data.y.sum()), data.rows - int(data.y.sum())) == (212, 357)
    for i, feature in enumerate(schema.features):
        assert feature.minimum <= data.x[:, i].min() and data.x[:, i].max() <= feature.maximum


# The data

def test_an_empty_file_is_refused(tmp_path, schema):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(InputError, match=f"{path}: the file is empty; expected a header row"):
        load_dataset(path, schema)


def test_a_header_without_rows_is_refused(tmp_path, schema):
    assert "no data rows" in problem(tmp_path, schema, ROWS[:1])


def test_a_missing_column_is_named(tmp_path, schema):
    rows = [row[1:] for row in ROWS]
    assert "line 1 (header): missing column(s) mean_radius" in problem(tmp_path, schema, rows)


def test_an_extra_column_is_named(tmp_path, schema):
    rows = [row + (["patient_id"] if i == 0 else [str(i)]) for i, row in enumerate(ROWS)]
    assert "column(s) not in the schema: patient_id" in problem(tmp_path, schema, rows)


def test_columns_may_come_in_any_order(tmp_path, schema):
    rows = [row[::-1] for row in ROWS]
    reordered = load_dataset(write(tmp_path, rows), schema)
    original = load_dataset(DATA, schema)
    np.testing.assert_array_equal(reordered.x, original.x)
    np.testing.assert_array_equal(reordered.y, original.y)


@pytest.mark.parametrize("value, message", [
    ("abc", "'abc' is not a number"),
    ("", "empty cell"),
    ("nan", "nan is not a finite number"),
    ("inf", "inf is not a finite number"),
    ("-inf", "-inf is not a finite number"),
    ("-0.5", "-0.5 is below the minimum 0.0"),
    ("1e9", "1000000000.0 is above the maximum 100.0"),
])
def test_a_bad_cell_is_named_by_file_line_and_column(tmp_path, schema, value, message):
    text = problem(tmp_path, schema, rows_with("mean_radius", 7, value))
    assert f"bad.csv, line 7, column 'mean_radius': {message}" in text


def test_an_unknown_label_is_named(tmp_path, schema):
    text = problem(tmp_path, schema, rows_with("diagnosis", 3, "maybe"))
    assert "line 3, column 'diagnosis': unknown label 'maybe' (expected one of benign, " \
           "malignant)" in text


def test_a_single_class_is_refused(tmp_path, schema):
    rows = [ROWS[0]] + [row for row in ROWS[1:] if row[-1] == "benign"]
    assert "column 'diagnosis': every row is 'benign'; training needs both labels" in problem(
        tmp_path, schema, rows)


def test_a_short_row_is_named(tmp_path, schema):
    rows = copy.deepcopy(ROWS)
    rows[4] = rows[4][:-2]
    assert "line 5: 29 cells, the header has 31" in problem(tmp_path, schema, rows)


def test_every_problem_is_listed_up_to_a_limit(tmp_path, schema):
    rows = copy.deepcopy(ROWS)
    for row in rows[1:31]:
        row[0] = "x"
    text = problem(tmp_path, schema, rows)
    assert text.startswith(f"{tmp_path / 'bad.csv'}: 30 problem(s) in the data:")
    assert "line 2, column 'mean_radius'" in text and "line 21, column" in text
    assert "line 22, column" not in text
    assert text.endswith(f"... and {30 - MAX_REPORTED_PROBLEMS} more")


def test_line_numbers_count_quoted_line_breaks_as_a_reader_does(schema):
    # A quoted cell spanning two lines: the next row starts one line later in the file.
    header = ",".join(ROWS[0])
    good = ",".join(ROWS[1])
    bad = ",".join(ROWS[2][:-1] + ['"benign\nish"'])
    text = "\n".join([header, bad, good.replace("17.99", "oops")])
    with pytest.raises(InputError) as e:
        parse_csv(text, schema, "f.csv")
    assert "f.csv, line 2, column 'diagnosis': unknown label 'benign\\nish'" in str(e.value)
    assert "f.csv, line 4, column 'mean_radius': 'oops' is not a number" in str(e.value)


@settings(max_examples=25, deadline=None)
@given(line=st.integers(2, len(ROWS)), column=st.integers(0, 29),
       value=st.sampled_from(["x", "nan", "-1", "1e12", " "]))
def test_any_bad_cell_anywhere_is_reported_where_it_is(line, column, value):
    rows = rows_with(ROWS[0][column], line, value)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    with pytest.raises(InputError) as e:
        parse_csv(out.getvalue(), Schema.load(SCHEMA), "data.csv")
    assert f"data.csv, line {line}, column '{ROWS[0][column]}':" in str(e.value)


def test_the_command_line_exits_2_with_the_message(tmp_path, capsys):
    bad = write(tmp_path, rows_with("worst_area", 12, "-3"))
    assert main(["train", "--data", str(bad), "--model-dir", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert f"error: {bad}: 1 problem(s) in the data:" in err
    assert "line 12, column 'worst_area': -3.0 is below the minimum 0.0" in err
    assert not (tmp_path / "m").exists()


def test_a_missing_data_file_exits_2(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "none.csv"),
                 "--model-dir", str(tmp_path / "m")]) == 2
    assert "cannot read the data (No such file or directory)" in capsys.readouterr().err


def test_the_data_set_is_the_one_csv_in_its_directory(tmp_path):
    assert the_csv(DATA.parent) == DATA
    with pytest.raises(InputError, match="holds 0 CSV files, not one; name the data set"):
        the_csv(tmp_path)
