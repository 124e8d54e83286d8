"""Split, metrics, models, export and the artifacts of a training run (the shared contract)."""
from __future__ import annotations

import csv
import datetime
import hashlib
import json
from itertools import product

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter
from hypothesis import given, settings
from hypothesis import strategies as st

from training import export, gate, metrics, train
from training.__main__ import main
from training.config import TrainConfig
from training.data import load_dataset
from contract.errors import InputError
from contract.litert import LiteRTModel
from training.models import build_logistic_regression, build_mlp
from contract.schema import Schema
from training.split import stratified_split

from conftest import DATA, SCHEMA

Y = np.array([0] * 60 + [1] * 40)


# Split

def test_the_split_is_deterministic_stratified_and_disjoint():
    a = stratified_split(Y, 7, 0.15, 0.2)
    b = stratified_split(Y, 7, 0.15, 0.2)
    for left, right in zip((a.train, a.validation, a.test), (b.train, b.validation, b.test)):
        np.testing.assert_array_equal(left, right)
    every = np.concatenate([a.train, a.validation, a.test])
    assert sorted(every) == list(range(len(Y)))
    assert (len(a.test), len(a.validation), len(a.train)) == (20, 15, 65)
    assert Y[a.test].mean() == Y.mean() and Y[a.validation].mean() == Y.mean()
    assert not np.array_equal(stratified_split(Y, 8, 0.15, 0.2).test, a.test)


def test_a_class_too_small_to_split_is_an_input_error():
    with pytest.raises(InputError, match="only 2 row.s. have the label 'malignant'"):
        stratified_split(np.array([0] * 50 + [1] * 2), 1, 0.15, 0.2, {0: "b", 1: "malignant"})


def test_impossible_fractions_are_refused():
    with pytest.raises(ValueError):
        stratified_split(Y, 1, 0.5, 0.5)


# Metrics

def test_metrics_on_a_small_known_case():
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.1, 0.6, 0.4, 0.8, 0.9], dtype=np.float32)
    m = metrics.classification_metrics(y, p, 0.5)
    assert m["confusion_matrix"] == [[1, 1], [1, 2]]
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    assert m["roc_auc"] == pytest.approx(5 / 6)
    expected = -np.mean(np.log([0.9, 0.4, 0.4, 0.8, 0.9]))
    assert m["log_loss"] == pytest.approx(expected, rel=1e-6)
    assert metrics.metric("recall", y, p, 0.5) == m["recall"]


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


# Models

def test_the_builders_take_raw_values_and_output_one_probability():
    x = np.random.default_rng(0).normal(500, 100, size=(64, 5)).astype(np.float32)
    config = TrainConfig(mlp_hidden_units=(4,))
    for build in (build_mlp, build_logistic_regression):
        model = build(x, config)
        assert model.layers[0].name == "normalization"
        # Adapted on the training rows, the first layer turns raw values into z-scores.
        z = model.layers[0](x).numpy()
        np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-4)
        p = model.predict(x, verbose=0)
        assert p.shape == (64, 1) and ((0 <= p) & (p <= 1)).all()
    assert build_logistic_regression(x, config).count_params() == 5 + 5 + 1 + 5 + 1  # norm+dense


def test_the_candidate_is_the_better_model_on_validation():
    def trained(name, **scores):
        return train.Trained(name, None, {}, 1, scores, {}, np.array([]))
    a, b = trained("a", roc_auc=0.97, log_loss=0.2), trained("b", roc_auc=0.98, log_loss=0.3)
    assert train.choose([a, b], "roc_auc") is b
    assert train.choose([a, b], "log_loss") is a
    assert train.choose([a, trained("c", roc_auc=0.97)], "roc_auc") is a  # a tie: first listed


# Export

def test_parity_fails_loudly_when_litert_and_keras_disagree():
    x = np.random.default_rng(1).normal(10, 3, size=(50, 4)).astype(np.float32)
    model = build_logistic_regression(x, TrainConfig())
    lite = LiteRTModel(export.to_tflite(model))
    assert export.parity(model, lite, x) <= export.PARITY_TOLERANCE
    kernel, bias = model.layers[-1].get_weights()
    model.layers[-1].set_weights([kernel, bias + 0.01])  # the export no longer matches
    with pytest.raises(export.ParityError, match=r"differs from the Keras model by up to .* "
                                                 r"on 50 rows \(allowed: 1e-05\)"):
        export.parity(model, lite, x)


def test_training_stops_and_writes_no_model_when_parity_fails(tmp_path, monkeypatch):
    x = np.zeros((2, 30), dtype=np.float32)
    other = export.to_tflite(build_logistic_regression(x + 1, TrainConfig()))
    monkeypatch.setattr(export, "to_tflite", lambda model: other)  # a wrong export
    config = TrainConfig(architectures=("logistic_regression",), max_epochs=1)
    with pytest.raises(export.ParityError):
        train.run(DATA, SCHEMA, tmp_path, config, gate.load_policy(), out=lambda line: None)
    assert not (tmp_path / "model.tflite").exists()


def test_a_file_that_is_no_model_is_an_input_error():
    with pytest.raises(InputError, match="champion.tflite: not a LiteRT model"):
        LiteRTModel(b"not a flatbuffer", "champion.tflite")


# The artifacts (the contract with the service and the image)

def test_the_tflite_model_has_one_raw_input_and_one_probability_output(model_dir):
    interpreter = Interpreter(model_path=str(model_dir / "model.tflite"))
    (tensor_in,), (tensor_out,) = (interpreter.get_input_details(),
                                   interpreter.get_output_details())
    assert list(tensor_in["shape_signature"]) == [-1, 30] and tensor_in["dtype"] == np.float32
    assert list(tensor_out["shape_signature"]) == [-1, 1] and tensor_out["dtype"] == np.float32


def test_keras_and_litert_agree_on_every_row_of_the_data(model_dir):
    data = load_dataset(DATA, Schema.load(SCHEMA))
    keras_p = keras.saving.load_model(model_dir / "model.keras").predict(data.x, verbose=0)
    lite_p = LiteRTModel((model_dir / "model.tflite").read_bytes()).predict(data.x)
    assert np.max(np.abs(keras_p - lite_p)) <= export.PARITY_TOLERANCE
    results = json.loads((model_dir / "metrics.json").read_text())
    assert results["parity"]["max_abs_diff"] <= 1e-5
    assert results["parity"]["rows"] == results["split"]["test"] == 113


def test_the_manifest_follows_the_contract(model_dir):
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert set(manifest) == {"version", "created", "git_commit", "files", "data", "schema",
                             "model", "example", "libraries"}
    created = datetime.datetime.fromisoformat(manifest["created"])
    assert created.tzinfo is not None
    assert manifest["version"] == str(int(created.timestamp()))
    for name in ("model.tflite", "model.keras"):
        assert manifest["files"][name]["sha256"] == hashlib.sha256(
            (model_dir / name).read_bytes()).hexdigest()
    assert manifest["data"] == {"path": "data/wdbc.csv", "rows": 569,
                                "sha256": hashlib.sha256(DATA.read_bytes()).hexdigest()}
    assert manifest["schema"] == json.loads(SCHEMA.read_text())
    results = json.loads((model_dir / "metrics.json").read_text())
    assert manifest["model"] == {
        "architecture": results["candidate"], "threshold": 0.5, "primary_metric": "roc_auc",
        "primary_metric_value": results["metrics"]["roc_auc"]}
    assert manifest["model"]["architecture"] in {"mlp", "logistic_regression"}
    assert set(manifest["libraries"]) == {"tensorflow", "keras", "ai-edge-litert", "numpy",
                                          "python"}
    assert len(manifest["git_commit"]) == 40 or manifest["git_commit"] == "unknown"
    # The example is a real row of the CSV, written as the CSV writes it.
    names = [f["name"] for f in manifest["schema"]["features"]]
    assert list(manifest["example"]) == names
    with DATA.open(newline="") as f:
        rows = [[float(row[name]) for name in names] for row in csv.DictReader(f)]
    assert list(manifest["example"].values()) in rows


def test_metrics_json_has_both_models_and_the_candidate_is_the_better_on_validation(model_dir):
    results = json.loads((model_dir / "metrics.json").read_text())
    assert {"accuracy", "roc_auc", "f1", "precision", "recall", "log_loss",
            "confusion_matrix"} <= set(results["metrics"])
    assert sum(map(sum, results["metrics"]["confusion_matrix"])) == results["split"]["test"]
    assert set(results["performance"]) == {"model_size_bytes", "inference_us_1_row",
                                           "inference_us_1024_rows"}
    assert results["performance"]["model_size_bytes"] == (model_dir / "model.tflite").stat(
    ).st_size
    models = results["models"]
    assert set(models) == {"mlp", "logistic_regression"}
    other = next(name for name in models if name != results["candidate"])
    assert models[results["candidate"]]["validation"]["roc_auc"] >= \
        models[other]["validation"]["roc_auc"]
    for trained in models.values():
        # Early stopping kept the best epoch and stopped `patience` epochs after it.
        assert trained["epochs"] == trained["best_epoch"] + TrainConfig().patience
    assert results["metrics"]["roc_auc"] >= 0.97


def test_progress_lines_and_the_summary(tmp_path):
    lines = []
    config = TrainConfig(architectures=("logistic_regression",), max_epochs=12)
    train.run(DATA, SCHEMA, tmp_path, config, gate.load_policy(), out=lines.append)
    text = "\n".join(lines)
    assert "569 rows, 30 features; split 370 train / 86 validation / 113 test" in text
    assert "logistic_regression  epoch    1/12  loss " in text and "val_auc" in text
    assert "logistic_regression  epoch   10/12" in text
    assert "== training summary ==" in text and "parity max |diff|" in text
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
