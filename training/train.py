"""Fit the model builders on one split, keep the better one by the gate's primary metric,
export it to LiteRT and write every artifact of a training run to the model directory."""
from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from training import export, plots, report
from training.artifacts import display_path, write_json
from training.config import TrainConfig
from training.data import Dataset, load_dataset
from training.evaluate import evaluate_model
from training.gate import Policy, better
from contract.litert import LiteRTModel
from training.metrics import classification_metrics
from training.models import BUILDERS
from contract.schema import Schema
from training.split import Split, stratified_split

Printer = Callable[[str], None]
THRESHOLD = 0.5
PROGRESS_EVERY = 10  # epochs between progress lines


@dataclass
class Trained:
    architecture: str
    model: keras.Model
    history: dict  # Keras history: loss, auc, val_loss, val_auc per epoch
    best_epoch: int
    validation: dict  # metrics on the validation split
    test: dict  # metrics on the test split (Keras predictions)
    test_probabilities: np.ndarray


class Progress(keras.callbacks.Callback):
    """One line every few epochs: epoch, training loss, validation loss and ROC AUC."""

    def __init__(self, name: str, max_epochs: int, out: Printer):
        super().__init__()
        self.name, self.max_epochs, self.out = name, max_epochs, out

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % PROGRESS_EVERY == 0 or epoch == 0:
            self.out(f"  {self.name:<20} epoch {epoch + 1:>4}/{self.max_epochs}  "
                     f"loss {logs['loss']:.4f}  val_loss {logs['val_loss']:.4f}  "
                     f"val_auc {logs['val_auc']:.4f}")


def seed_everything(seed: int) -> None:
    """Same seed, same machine, same metrics: seeds Python, numpy and TensorFlow and makes
    TensorFlow's ops deterministic."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def fit(architecture: str, data: Dataset, split: Split, config: TrainConfig,
        out: Printer) -> Trained:
    seed_everything(config.seed)
    x, y = data.x, data.y.astype(np.float32)
    model = BUILDERS[architecture](x[split.train], config)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience,
                                         restore_best_weights=True)
    history = model.fit(
        x[split.train], y[split.train], validation_data=(x[split.validation], y[split.validation]),
        epochs=config.max_epochs, batch_size=config.batch_size, shuffle=True, verbose=0,
        callbacks=[stop, Progress(architecture, config.max_epochs, out)]).history
    history = {k: [float(v) for v in values] for k, values in history.items()}
    best_epoch = int(np.argmin(history["val_loss"])) + 1
    out(f"  {architecture:<20} stopped after epoch {len(history['loss'])}, "
        f"best validation loss at epoch {best_epoch}")

    validation, test = (model.predict(x[rows], verbose=0)[:, 0]
                        for rows in (split.validation, split.test))
    return Trained(architecture, model, history, best_epoch,
                   classification_metrics(data.y[split.validation], validation, THRESHOLD),
                   classification_metrics(data.y[split.test], test, THRESHOLD), test)


def choose(trained: list[Trained], primary_metric: str) -> Trained:
    """The better model on the validation split (never the test split, which stays unseen
    for an honest estimate); on a tie, the one listed first in the config."""
    best = trained[0]
    for candidate in trained[1:]:
        if better(primary_metric, candidate.validation[primary_metric],
                  best.validation[primary_metric]):
            best = candidate
    return best


def example_row(row: np.ndarray, schema: Schema) -> dict:
    """The row keyed by feature name, each value as the CSV wrote it (shortest float32 text)."""
    return {feature.name: int(value) if feature.dtype == "int"
            else float(np.format_float_positional(value, unique=True))
            for feature, value in zip(schema.features, row)}


def run(data_path: Path, schema_path: Path, model_dir: Path, config: TrainConfig,
        policy: Policy, out: Printer = print) -> dict:
    """The whole training stage; returns metrics.json's content."""
    started = time.perf_counter()
    trained_at = datetime.datetime.now(datetime.timezone.utc)
    schema = Schema.load(schema_path)
    data = load_dataset(data_path, schema)
    split = stratified_split(data.y, config.seed, config.validation_fraction,
                             config.test_fraction,
                             {0: schema.negative_label, 1: schema.positive_label})
    out(f"data: {data.path}, {data.rows} rows, {len(schema.features)} features; split "
        f"{len(split.train)} train / {len(split.validation)} validation / {len(split.test)} test")

    trained = [fit(name, data, split, config, out) for name in config.architectures]
    best = choose(trained, policy.primary_metric)
    out(f"candidate: {best.architecture} (validation {policy.primary_metric} "
        f"{best.validation[policy.primary_metric]:.4f})")

    model_dir.mkdir(parents=True, exist_ok=True)
    content = export.to_tflite(best.model)
    lite = LiteRTModel(content)
    max_diff = export.parity(best.model, lite, data.x[split.test])
    (model_dir / "model.tflite").write_bytes(content)
    best.model.save(model_dir / "model.keras")

    test_x, test_y = data.x[split.test], data.y[split.test]
    evaluation = evaluate_model(lite, len(content), test_x, test_y, THRESHOLD)
    results = {
        "metrics": evaluation.metrics,
        "performance": evaluation.performance,
        "candidate": best.architecture,
        "primary_metric": policy.primary_metric,
        "threshold": THRESHOLD,
        "models": {t.architecture: {"validation": t.validation, "test": t.test,
                                    "epochs": len(t.history["loss"]), "best_epoch": t.best_epoch,
                                    "parameters": t.model.count_params()} for t in trained},
        "parity": {"max_abs_diff": max_diff, "tolerance": export.PARITY_TOLERANCE,
                   "rows": len(split.test)},
        "split": {"train": len(split.train), "validation": len(split.validation),
                  "test": len(split.test)},
        "config": config.to_dict(),
        "history": {t.architecture: t.history for t in trained},
    }
    write_json(model_dir / "metrics.json", results)
    manifest = export.manifest(
        model_dir,
        data={"path": display_path(data.path), "sha256": data.sha256, "rows": data.rows},
        schema=schema.to_dict(),
        model={"architecture": best.architecture, "threshold": THRESHOLD,
               "primary_metric": policy.primary_metric,
               "primary_metric_value": evaluation.metrics[policy.primary_metric]},
        example=example_row(test_x[0], schema),
        trained_at=trained_at)
    write_json(model_dir / "manifest.json", manifest)
    plots.training_curves(results["history"], model_dir / plots.FILES["training_curves"])
    plots.roc_curves(test_y, {t.architecture: t.test_probabilities for t in trained},
                     model_dir / plots.FILES["roc_curve"])
    plots.confusion_matrix(evaluation.metrics["confusion_matrix"],
                           (schema.negative_label, schema.positive_label),
                           model_dir / plots.FILES["confusion_matrix"])
    plots.feature_distributions(data.x, data.y, schema,
                                model_dir / plots.FILES["feature_distributions"])
    (model_dir / "report.md").write_text(report.render(manifest, results))
    seconds = time.perf_counter() - started
    out(report.summary(manifest, results, model_dir, seconds))
    return results
