"""The data validation: every bad input stops with file, line and column. On small data sets
of each task (tests/conftest.py), so it holds whatever data set is active."""
from __future__ import annotations

import copy
import csv
import io
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.__main__ import main, the_csv
from training.data import MAX_REPORTED_PROBLEMS, load_dataset, parse_csv
from contract.errors import InputError
from contract.schema import Schema

from conftest import DATA, SCHEMA, TASKS, write_task_data


@pytest.fixture(scope="module")
def task_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tasks")
    return {task: write_task_data(directory / task, task) for task in TASKS}


@pytest.fixture(scope="module")
def schema(task_files) -> Schema:
    return Schema.load(task_files["binary"][1])


@pytest.fixture(scope="module")
def ROWS(task_files) -> list[list[str]]:  # noqa: N802 (the rows of the binary file, header first)
    return list(csv.reader(io.StringIO(task_files["binary"][0].read_text())))


def write(tmp_path, rows, name="bad.csv"):
    path = tmp_path / name
    with path.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    return path


def rows_with(rows, column: str, line: int, value: str) -> list[list[str]]:
    """The rows with one cell replaced; `line` counts as a person reading the file does."""
    rows = copy.deepcopy(rows)
    rows[line - 1][rows[0].index(column)] = value
    return rows


def problem(tmp_path, schema, rows) -> str:
    with pytest.raises(InputError) as e:
        load_dataset(write(tmp_path, rows), schema)
    return str(e.value)


def test_the_active_data_set_is_valid():
    schema = Schema.load(SCHEMA)
    data = load_dataset(DATA, schema)
    assert data.x.shape == (data.rows, len(schema.features)) and data.x.dtype == np.float32
    for i, feature in enumerate(schema.features):
        column = data.x[:, i]
        assert feature.nullable or not np.isnan(column).any()
        present = column[~np.isnan(column)]
        if feature.is_category:
            assert set(present) <= set(range(len(feature.categories)))
        else:
            assert (feature.minimum is None or feature.minimum <= present.min()) and (
                feature.maximum is None or present.max() <= feature.maximum)
    if schema.task == "regression":
        assert data.y.dtype == np.float64 and np.isfinite(data.y).all()
    else:
        assert set(data.y) <= set(range(len(schema.labels)))


def test_each_task_encodes_features_and_targets(task_files):
    for task, (path, schema_path) in task_files.items():
        schema = Schema.load(schema_path)
        data = load_dataset(path, schema)
        rows = list(csv.DictReader(path.open()))
        assert data.rows == len(rows) == 300
        for row, x, y in zip(rows, data.x, data.y):
            assert math.isnan(x[0]) if row["length"] == "" else x[0] == np.float32(row["length"])
            assert x[1] == int(row["count"])
            assert math.isnan(x[2]) if row["colour"] == "" else (
                x[2] == ["red", "green", "blue"].index(row["colour"]))
            truth = row[schema.target]
            if task == "regression":
                assert y == float(truth)
            else:
                assert schema.class_labels[y] == truth
        assert data.y.dtype == (np.float64 if task == "regression" else np.int64)


# The data

def test_an_empty_file_is_refused(tmp_path, schema):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(InputError, match=f"{path}: the file is empty; expected a header row"):
        load_dataset(path, schema)


def test_a_header_without_rows_is_refused(tmp_path, schema, ROWS):
    assert "no data rows" in problem(tmp_path, schema, ROWS[:1])


def test_a_missing_column_is_named(tmp_path, schema, ROWS):
    rows = [row[1:] for row in ROWS]
    assert "line 1 (header): missing column(s) length" in problem(tmp_path, schema, rows)


def test_an_extra_column_is_named(tmp_path, schema, ROWS):
    rows = [row + (["patient_id"] if i == 0 else [str(i)]) for i, row in enumerate(ROWS)]
    assert "column(s) not in the schema: patient_id" in problem(tmp_path, schema, rows)


def test_columns_may_come_in_any_order(tmp_path, schema, ROWS, task_files):
    rows = [row[::-1] for row in ROWS]
    reordered = load_dataset(write(tmp_path, rows), schema)
    original = load_dataset(task_files["binary"][0], schema)
    np.testing.assert_array_equal(reordered.x, original.x)
    np.testing.assert_array_equal(reordered.y, original.y)


@pytest.mark.parametrize("value, message", [
    ("abc", "'abc' is not a number"),
    ("", "empty cell"),
    ("nan", "nan is not a finite number"),
    ("inf", "inf is not a finite number"),
    ("-inf", "-inf is not a finite number"),
    ("-1", "-1.0 is below the minimum 0.0"),
    ("2.5", "2.5 is not a whole number"),
    ("1e9", "1000000000.0 is above the maximum 20.0"),
])
def test_a_bad_cell_is_named_by_file_line_and_column(tmp_path, schema, ROWS, value, message):
    text = problem(tmp_path, schema, rows_with(ROWS, "count", 7, value))
    assert f"bad.csv, line 7, column 'count': {message}" in text


def test_an_unknown_category_is_named_with_the_allowed_ones(tmp_path, schema, ROWS):
    text = problem(tmp_path, schema, rows_with(ROWS, "colour", 9, "purple"))
    assert "bad.csv, line 9, column 'colour': unknown category 'purple' (allowed: 'red', " \
           "'green', 'blue'; or empty/null for missing)" in text


@pytest.mark.parametrize("task, value, message", [
    ("binary", "maybe", "unknown label 'maybe' (expected one of no, yes)"),
    ("multiclass", "huge", "unknown label 'huge' (expected one of small, medium, large)"),
    ("multiclass", "", "unknown label ''"),
    ("regression", "cheap", "'cheap' is not a number (the task is regression)"),
    ("regression", "", "'' is not a number"),
])
def test_a_bad_target_is_named(tmp_path, task_files, task, value, message):
    path, schema_path = task_files[task]
    rows = list(csv.reader(io.StringIO(path.read_text())))
    schema = Schema.load(schema_path)
    text = problem(tmp_path, schema, rows_with(rows, schema.target, 3, value))
    assert f"bad.csv, line 3, column '{schema.target}': {message}" in text


def test_a_single_class_is_refused(tmp_path, schema, ROWS):
    rows = [ROWS[0]] + [row for row in ROWS[1:] if row[-1] == "no"]
    assert "column 'y': every row is 'no'; training needs two labels or more" in problem(
        tmp_path, schema, rows)


def test_a_short_row_is_named(tmp_path, schema, ROWS):
    rows = copy.deepcopy(ROWS)
    rows[4] = rows[4][:-2]
    assert "line 5: 2 cells, the header has 4" in problem(tmp_path, schema, rows)


def test_every_problem_is_listed_up_to_a_limit(tmp_path, schema, ROWS):
    rows = copy.deepcopy(ROWS)
    for row in rows[1:31]:
        row[1] = "x"
    text = problem(tmp_path, schema, rows)
    assert text.startswith(f"{tmp_path / 'bad.csv'}: 30 problem(s) in the data:")
    assert "line 2, column 'count'" in text and "line 21, column" in text
    assert "line 22, column" not in text
    assert text.endswith(f"... and {30 - MAX_REPORTED_PROBLEMS} more")


def test_line_numbers_count_quoted_line_breaks_as_a_reader_does(schema, ROWS):
    # A quoted cell spanning two lines: the next row starts one line later in the file.
    header = ",".join(ROWS[0])
    good = ",".join(ROWS[1][:1] + ["oops"] + ROWS[1][2:])
    bad = ",".join(ROWS[2][:-1] + ['"no\nish"'])
    text = "\n".join([header, bad, good])
    with pytest.raises(InputError) as e:
        parse_csv(text, schema, "f.csv")
    assert "f.csv, line 2, column 'y': unknown label 'no\\nish'" in str(e.value)
    assert "f.csv, line 4, column 'count': 'oops' is not a number" in str(e.value)


@settings(max_examples=25, deadline=None)
@given(line=st.integers(2, 301), column=st.integers(0, 3),
       value=st.sampled_from(["x", "nan", "inf", "purple"]))
def test_any_bad_cell_anywhere_is_reported_where_it_is(task_files, line, column, value):
    path, schema_path = task_files["regression"]
    rows = list(csv.reader(io.StringIO(path.read_text())))
    rows = rows_with(rows, rows[0][column], line, value)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    with pytest.raises(InputError) as e:
        parse_csv(out.getvalue(), Schema.load(schema_path), "data.csv")
    assert f"data.csv, line {line}, column '{rows[0][column]}':" in str(e.value)


def test_an_empty_cell_is_missing_only_where_nullable(tmp_path, schema, ROWS):
    data = load_dataset(write(tmp_path, rows_with(ROWS, "length", 2, ""), "ok.csv"), schema)
    assert math.isnan(data.x[0, 0])
    assert "line 2, column 'count': empty cell (a value is required: the feature is not " \
           "nullable)" in problem(tmp_path, schema, rows_with(ROWS, "count", 2, " "))


def test_the_command_line_exits_2_with_the_message(tmp_path, capsys, task_files):
    path, schema_path = task_files["multiclass"]
    rows = list(csv.reader(io.StringIO(path.read_text())))
    bad = write(tmp_path, rows_with(rows, "colour", 12, "mauve"))
    assert main(["train", "--data", str(bad), "--schema", str(schema_path),
                 "--model-dir", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert f"error: {bad}: 1 problem(s) in the data:" in err
    assert "line 12, column 'colour': unknown category 'mauve'" in err
    assert not (tmp_path / "m").exists()


def test_a_missing_data_file_exits_2(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "none.csv"),
                 "--model-dir", str(tmp_path / "m")]) == 2
    assert "cannot read the data (No such file or directory)" in capsys.readouterr().err


def test_the_data_set_is_the_one_csv_in_its_directory(tmp_path):
    assert the_csv(DATA.parent) == DATA
    with pytest.raises(InputError, match="holds 0 CSV files, not one; name the data set"):
        the_csv(tmp_path)
