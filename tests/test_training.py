"""Split, metrics, models, export and the artifacts of a training run (the shared contract),
for each task, on small data sets of each task and on the active data set in data/."""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import math
from itertools import product

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter
from hypothesis import given, settings
from hypothesis import strategies as st

from training import export, gate, metrics, models, train
from training.__main__ import main
from training.config import TrainConfig
from training.data import load_dataset
from contract.errors import InputError
from contract.litert import LiteRTModel
from contract.schema import Schema

from conftest import DATA, SCHEMA, TASKS, active_policy, write_task_data


# Metrics

def test_each_task_has_the_contract_metric_names():
    assert metrics.metrics_for("binary") == ("accuracy", "roc_auc", "f1", "precision", "recall",
                                             "log_loss")
    assert metrics.metrics_for("multiclass") == ("accuracy", "macro_f1", "log_loss")
    assert metrics.metrics_for("regression") == ("rmse", "mae", "r2")
    assert set(metrics.HIGHER_IS_BETTER) == {m for names in metrics.METRICS.values()
                                             for m in names}


def test_binary_metrics_on_a_small_known_case():
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.1, 0.6, 0.4, 0.8, 0.9], dtype=np.float32)
    m = metrics.task_metrics("binary", y, p[:, None], 0.5)
    assert m["confusion_matrix"] == [[1, 1], [1, 2]]
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    assert m["roc_auc"] == pytest.approx(5 / 6)
    expected = -np.mean(np.log([0.9, 0.4, 0.4, 0.8, 0.9]))
    assert m["log_loss"] == pytest.approx(expected, rel=1e-6)
    assert metrics.metric("recall", y, p, 0.5) == m["recall"]
    assert metrics.metric("roc_auc", y, p[:, None]) == m["roc_auc"]


def test_multiclass_metrics_on_a_small_known_case():
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([[.8, .1, .1], [.2, .7, .1], [.1, .8, .1], [.1, .6, .3], [.3, .3, .4],
                  [.5, .2, .3]], dtype=np.float32)
    m = metrics.task_metrics("multiclass", y, p, labels=("a", "b", "c"))
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    # precision a 1/2, b 2/3, c 1; recall a 1/2, b 1, c 1/2
    assert m["per_class"]["b"] == pytest.approx({"precision": 2 / 3, "recall": 1.0,
                                                 "support": 2})
    f1 = [0.5, 0.8, 2 / 3]
    assert m["macro_f1"] == pytest.approx(np.mean(f1))
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([.8, .2, .8, .6, .4, .3])), rel=1e-6)
    for name in ("accuracy", "macro_f1", "log_loss"):
        assert metrics.metric(name, y, p) == m[name]


def test_regression_metrics_on_a_small_known_case():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    v = np.array([[1.5], [2.0], [2.0], [5.0]], dtype=np.float32)
    m = metrics.task_metrics("regression", y, v)
    assert m["rmse"] == pytest.approx(math.sqrt((0.25 + 0 + 1 + 1) / 4))
    assert m["mae"] == pytest.approx(2.5 / 4)
    assert m["r2"] == pytest.approx(1 - 2.25 / 5)
    assert metrics.metric("r2", y, v) == m["r2"]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 6)), min_size=2, max_size=40)
       .filter(lambda rows: len({label for label, _ in rows}) == 2))
def test_roc_auc_is_the_share_of_correctly_ordered_pairs_and_the_area_under_the_curve(rows):
    y = np.array([label for label, _ in rows])
    p = np.array([score / 6 for _, score in rows])  # few distinct scores: many ties
    pairs = [(a, b) for a, b in product(p[y == 1], p[y == 0])]
    by_pairs = np.mean([1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs])
    assert metrics.roc_auc(y, p) == pytest.approx(by_pairs)
    fpr, tpr = metrics.roc_curve(y, p)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert np.trapezoid(tpr, fpr) == pytest.approx(by_pairs)


def test_roc_auc_of_one_class_is_undefined_and_empty_predictions_score_zero():
    assert np.isnan(metrics.roc_auc(np.ones(3), np.array([0.1, 0.5, 0.9])))
    m = metrics.classification_metrics(np.array([0, 1]), np.array([0.1, 0.2]), 0.5)
    assert (m["precision"], m["recall"], m["f1"]) == (0.0, 0.0, 0.0)


# The gate's policy per task

def test_each_task_has_a_default_policy_naming_only_its_metrics():
    for task in TASKS:
        policy = gate.load_policy(gate.TASK_POLICIES / f"{task}.toml", task)
        assert {policy.primary_metric, *policy.minimum, *policy.maximum} <= set(
            metrics.metrics_for(task))


def test_a_policy_naming_a_metric_the_task_lacks_is_refused_with_the_task_metrics(
        tmp_path, capsys):
    path = tmp_path / "gate.toml"
    path.write_text('primary_metric = "roc_auc"\n[minimum]\nr2 = 0.5\n')
    with pytest.raises(InputError) as e:
        gate.load_policy(path, "multiclass")
    assert str(e.value) == (f"{path}: names r2, roc_auc, not a metric of the multiclass task; "
                            "its metrics are accuracy, macro_f1, log_loss")
    data, schema = write_task_data(tmp_path / "data", "regression")
    assert main(["train", "--data", str(data), "--schema", str(schema), "--gate", str(path),
                 "--model-dir", str(tmp_path / "m")]) == 2
    assert "its metrics are rmse, mae, r2" in capsys.readouterr().err


# Models

@pytest.fixture(scope="module")
def small(tmp_path_factory) -> dict:
    """task -> the encoded training inputs of a small data set of that task."""
    found = {}
    for task in TASKS:
        data_path, schema_path = write_task_data(tmp_path_factory.mktemp(task), task, rows=120)
        data = load_dataset(data_path, Schema.load(schema_path))
        found[task] = models.Inputs(data.schema, data.x, data.y)
    return found


@pytest.mark.parametrize("task", TASKS)
def test_every_registered_builder_gives_the_contract_output_for_each_task(small, task):
    inputs = small[task]
    for name in models.REGISTRY:
        model = models.build(name, inputs)
        out = model.predict(inputs.x, verbose=0)
        assert model.input_shape == (None, 3)
        assert np.isfinite(out).all()  # NaN in, numbers out
        if task == "binary":
            assert out.shape == (120, 1) and ((0 <= out) & (out <= 1)).all()
        elif task == "multiclass":
            assert out.shape == (120, 3)
            np.testing.assert_allclose(out.sum(axis=1), 1, rtol=1e-5)
        else:
            assert out.shape == (120, 1)


def test_the_preprocessing_imputes_one_hot_encodes_and_standardizes(small):
    inputs = small["binary"]
    x, features = models.preprocessing(inputs)
    encoded = np.asarray(keras.Model(x, features)(inputs.x))
    length, count, colour = inputs.x.T
    missing_length, missing_colour = np.isnan(length), np.isnan(colour)
    assert missing_length.any() and missing_colour.any()
    # A missing length is the median of the present ones, a missing colour all zeros in its
    # one-hot part; each nullable feature followed by its was-missing column; standardized.
    expected = np.column_stack([
        np.where(missing_length, np.median(length[~missing_length]), length), missing_length,
        count, *(colour == code for code in range(3)), missing_colour])
    np.testing.assert_allclose(encoded, (expected - expected.mean(axis=0)) / expected.std(axis=0),
                               atol=1e-4)


def test_features_that_cannot_be_missing_go_straight_to_the_normalization(small):
    """Nothing per column and no NaN handling in the graph where the schema needs none (each
    op costs LiteRT time on every call)."""
    inputs = small["binary"]
    numbers = dataclasses.replace(inputs.schema, features=tuple(
        dataclasses.replace(feature, nullable=False) for feature in inputs.schema.features[:2]))
    x = np.nan_to_num(inputs.x[:, :2])
    model = keras.Model(*models.preprocessing(models.Inputs(numbers, x, inputs.y)))
    assert [type(op).__name__ for op in model.operations] == ["InputLayer", "Normalization"]
    np.testing.assert_allclose(model(x), (x - x.mean(axis=0)) / x.std(axis=0), atol=1e-5)


def test_the_regression_output_is_in_the_target_units(small):
    inputs = small["regression"]
    model = models.build("linear", inputs)
    out = model.predict(inputs.x, verbose=0)
    # Untrained, the standardized output is near 0: the last layer maps it near the mean.
    assert abs(out.mean() - inputs.y.mean()) < 2 * inputs.y.std()
    assert model.layers[-1].name == "value"


def test_an_unknown_model_name_is_an_input_error(small):
    with pytest.raises(InputError, match="no model named 'forest'; registered: mlp, linear"):
        models.build("forest", small["binary"])


@pytest.mark.trains  # a whole training run
def test_a_registered_builder_takes_part_with_its_settings(small, tmp_path):
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class TinySettings:
        units: int = 2

    @models.register("tiny", TinySettings)
    def build_tiny(task, inputs, settings):
        x, features = models.preprocessing(inputs)
        hidden = keras.layers.Dense(settings.units, activation="relu")(features)
        model = keras.Model(x, models.output_layer(task, inputs, hidden), name="tiny")
        return models.compile_for(task, model, 1e-2)

    try:
        model = models.build("tiny", small["multiclass"], TinySettings(units=3))
        assert model.layers[-2].units == 3
        data, schema = write_task_data(tmp_path / "data", "multiclass")
        config = TrainConfig(models=("tiny",), max_epochs=3)
        results = train.run(data, schema, tmp_path / "m", config, active_policy(schema),
                            out=lambda line: None)
        assert list(results["models"]) == ["tiny"] and results["candidate"] == "tiny"
    finally:
        del models.REGISTRY["tiny"]


def test_the_candidate_is_the_better_model_on_validation():
    def trained(name, **scores):
        return train.Trained(name, None, {}, 1, scores, {}, np.array([]))
    a, b = trained("a", roc_auc=0.97, log_loss=0.2), trained("b", roc_auc=0.98, log_loss=0.3)
    assert train.choose([a, b], "roc_auc") is b
    assert train.choose([a, b], "log_loss") is a
    assert train.choose([a, trained("c", roc_auc=0.97)], "roc_auc") is a  # a tie: first listed


# Export

@pytest.mark.parametrize("task", TASKS)
def test_parity_covers_missing_values_and_every_category(small, task):
    inputs = small[task]
    model = models.build("mlp", inputs)
    rows = export.parity_rows(inputs.x[:5], inputs.schema)
    # 5 rows, + missing length, + each of 3 colours, + missing colour
    assert len(rows) == 5 + 1 + 3 + 1
    assert np.isnan(rows[5, 0]) and list(rows[6:9, 2]) == [0, 1, 2] and np.isnan(rows[9, 2])
    lite = LiteRTModel(export.to_tflite(model))
    scale = export.parity_scale(inputs.schema, inputs.y)
    assert scale == (np.ptp(inputs.y) if task == "regression" else 1.0)
    found = export.parity(model, lite, rows, scale)
    assert found["max_diff"] <= export.PARITY_TOLERANCE and found["rows"] == 10


def test_parity_fails_loudly_when_litert_and_keras_disagree(small):
    inputs = small["binary"]
    model = models.build("linear", inputs)
    lite = LiteRTModel(export.to_tflite(model))
    kernel, bias = model.layers[-1].get_weights()
    model.layers[-1].set_weights([kernel, bias + 0.01])  # the export no longer matches
    with pytest.raises(export.ParityError, match=r"differs from the Keras model by up to .* "
                                                 r"on 120 rows \(allowed: 1e-05\)"):
        export.parity(model, lite, inputs.x)


@pytest.mark.trains  # a whole training run
def test_training_stops_and_writes_no_model_when_parity_fails(tmp_path, monkeypatch, small):
    data, schema = write_task_data(tmp_path / "data", "binary")
    other = export.to_tflite(models.build("linear", small["binary"]))
    monkeypatch.setattr(export, "to_tflite", lambda model: other)  # a wrong export
    with pytest.raises(export.ParityError):
        train.run(data, schema, tmp_path / "m", TrainConfig(models=("linear",), max_epochs=1),
                  active_policy(schema), out=lambda line: None)
    assert not (tmp_path / "m" / "model.tflite").exists()


def test_a_file_that_is_no_model_is_an_input_error():
    with pytest.raises(InputError, match="champion.tflite: not a LiteRT model"):
        LiteRTModel(b"not a flatbuffer", "champion.tflite")


# The artifacts of each task (the contract with the service and the image)

@pytest.mark.parametrize("task", TASKS)
def test_each_task_trains_to_the_contract(task_model_dirs, task):
    directory, data_path, schema_path = task_model_dirs[task]
    schema = Schema.load(schema_path)
    results = json.loads((directory / "metrics.json").read_text())
    assert results["task"] == task
    assert set(metrics.metrics_for(task)) <= set(results["metrics"])
    interpreter = Interpreter(model_path=str(directory / "model.tflite"))
    (tensor_in,), (tensor_out,) = (interpreter.get_input_details(),
                                   interpreter.get_output_details())
    assert list(tensor_in["shape_signature"]) == [-1, 3]
    assert list(tensor_out["shape_signature"]) == [-1, len(schema.outputs)]
    # Keras and LiteRT agree on every row, missing values included.
    data = load_dataset(data_path, schema)
    keras_out = keras.saving.load_model(directory / "model.keras").predict(data.x, verbose=0)
    lite_out = LiteRTModel((directory / "model.tflite").read_bytes()).predict(data.x)
    scale = np.ptp(data.y) if task == "regression" else 1.0
    assert np.max(np.abs(keras_out - lite_out)) / scale <= export.PARITY_TOLERANCE
    assert results["parity"]["max_diff"] <= export.PARITY_TOLERANCE
    # The models learned something: better than a constant.
    m = results["metrics"]
    assert {"binary": lambda: m["roc_auc"] > 0.8, "multiclass": lambda: m["accuracy"] > 0.6,
            "regression": lambda: m["r2"] > 0.5}[task]()
    if task == "multiclass":
        assert set(m["per_class"]) == set(schema.labels)
        assert np.sum(m["confusion_matrix"]) == results["split"]["test"]
    # The example row is as a request would send it: categories by name, missing as None.
    example = json.loads((directory / "manifest.json").read_text())["example"]
    for feature in schema.features:
        value = example[feature.name]
        assert value is None or feature.encode(value) == feature.encode(value)


def test_the_manifest_follows_the_contract(model_dir):
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert set(manifest) == {"version", "created", "git_commit", "files", "data", "schema",
                             "model", "example", "libraries", "trained_on"}
    created = datetime.datetime.fromisoformat(manifest["created"])
    assert created.tzinfo is not None
    assert manifest["version"] == str(int(created.timestamp()))
    for name in ("model.tflite", "model.keras"):
        assert manifest["files"][name]["sha256"] == hashlib.sha256(
            (model_dir / name).read_bytes()).hexdigest()
    schema = Schema.load(SCHEMA)
    rows = load_dataset(DATA, schema).rows
    assert manifest["data"] == {"path": f"data/{DATA.name}", "rows": rows,
                                "sha256": hashlib.sha256(DATA.read_bytes()).hexdigest()}
    assert Schema.from_dict(manifest["schema"]) == schema
    results = json.loads((model_dir / "metrics.json").read_text())
    primary = active_policy().primary_metric
    assert manifest["model"] == {
        "architecture": results["candidate"], "threshold": 0.5, "primary_metric": primary,
        "primary_metric_value": results["metrics"][primary]}
    assert manifest["model"]["architecture"] in models.REGISTRY
    assert set(manifest["libraries"]) == {"tensorflow", "keras", "ai-edge-litert", "numpy",
                                          "python"}
    assert len(manifest["git_commit"]) == 40 or manifest["git_commit"] == "unknown"
    # The example is a real row, each value valid for its feature.
    assert list(manifest["example"]) == list(schema.feature_names)
    for feature in schema.features:
        feature.encode(manifest["example"][feature.name])


def test_metrics_json_has_every_model_and_the_candidate_is_the_best_on_validation(model_dir):
    results = json.loads((model_dir / "metrics.json").read_text())
    task = Schema.load(SCHEMA).task
    assert set(metrics.metrics_for(task)) <= set(results["metrics"])
    assert set(results["performance"]) == {"model_size_bytes", "inference_us_1_row",
                                           "inference_us_1024_rows"}
    assert results["performance"]["model_size_bytes"] == (model_dir / "model.tflite").stat(
    ).st_size
    models_ = results["models"]
    assert set(models_) == set(TrainConfig().models)
    primary = results["primary_metric"]
    best = models_[results["candidate"]]["validation"][primary]
    for trained in models_.values():
        assert not gate.better(primary, trained["validation"][primary], best)
        # Early stopping kept the best epoch and stopped `patience` epochs after it, or ran out.
        assert trained["epochs"] in (trained["best_epoch"] + TrainConfig().patience,
                                     TrainConfig().max_epochs)
        history = results["history"][results["candidate"]]
        assert len(history[f"val_{primary}"]) == len(history["loss"])


@pytest.mark.trains  # a whole training run
def test_progress_lines_and_the_summary(tmp_path):
    lines = []
    data, schema = write_task_data(tmp_path / "data", "multiclass")
    config = TrainConfig(models=("linear",), max_epochs=12)
    train.run(data, schema, tmp_path / "m", config, active_policy(schema), out=lines.append)
    text = "\n".join(lines)
    assert "300 rows, 3 features, task multiclass; split 191 train / 43 validation / 66 test" \
        in text
    assert "linear       epoch    1/12  loss " in text and "val_log_loss" in text
    assert "linear       epoch   10/12" in text
    assert "== training summary ==" in text and "parity max |diff|" in text
    assert "accuracy  macro_f1  log_loss" in text
    assert len(lines[-1].splitlines()) + len(lines) < 40  # one screen


@pytest.mark.slow
def test_two_trainings_give_identical_metrics_and_quiet_prints_nothing(model_dir, tmp_path,
                                                                       capsys):
    assert main(["train", "--model-dir", str(tmp_path), "--quiet",
                 "--data", str(DATA), "--schema", str(SCHEMA)]) == 0
    assert capsys.readouterr() == ("", "")
    first, second = (json.loads((d / "metrics.json").read_text()) for d in (model_dir, tmp_path))
    for key in ("metrics", "models", "history", "parity", "candidate", "split"):
        assert first[key] == second[key], key
    assert (model_dir / "model.tflite").read_bytes() == (tmp_path / "model.tflite").read_bytes()
