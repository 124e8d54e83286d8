"""Fit the model builders on one split, keep the better one by the gate's primary metric,
export it to LiteRT and write every artifact of a training run to the model directory."""
from __future__ import annotations

import datetime
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from training import export, plots, report
from training.artifacts import display_path, replacing, write_json, write_text
from training.config import TrainConfig
from training.data import Dataset, load_dataset
from training.evaluate import evaluate_model
from training.gate import Policy, better
from contract.litert import LiteRTModel
from training.metrics import task_metrics, metric
from training.models import Inputs, build
from contract.schema import Schema
from training.split import Split, assign, record

Printer = Callable[[str], None]
THRESHOLD = 0.5
PROGRESS_EVERY = 10  # epochs between progress lines


@dataclass
class Trained:
    name: str
    model: keras.Model
    history: dict  # per epoch: loss, val_loss and the validation primary metric
    best_epoch: int
    validation: dict  # metrics on the validation split
    test: dict  # metrics on the test split (Keras predictions)
    test_outputs: np.ndarray


class EarlyStopping(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the best primary metric on the validation split
    (the gate's, as the model choice), a lower validation loss breaking a tie; stops after
    `patience` epochs without one; records both per epoch; prints a line every few epochs."""

    def __init__(self, name: str, primary: str, x: np.ndarray, y: np.ndarray,
                 config: TrainConfig, out: Printer):
        super().__init__()
        self.name, self.primary, self.x, self.y = name, primary, x, y
        self.patience, self.max_epochs, self.out = config.patience, config.max_epochs, out
        self.history: dict[str, list[float]] = {"val_loss": [], f"val_{primary}": []}
        self.best = (None, None)  # (primary metric, validation loss)
        self.best_epoch, self.best_weights = 0, None

    def on_train_begin(self, logs=None):
        self.forward = tf.function(lambda x: self.model(x, training=False))

    def on_epoch_end(self, epoch, logs=None):
        # One forward pass gives both (Keras's own validation would be a second one), traced
        # once: called eagerly, the model's many small ops cost more than the epoch.
        output = self.forward(self.x)
        loss = float(keras.ops.mean(keras.losses.get(self.model.loss)(self.y[:, None], output)))
        score = metric(self.primary, self.y, np.asarray(output), THRESHOLD)
        self.history["val_loss"].append(loss)
        self.history[f"val_{self.primary}"].append(score)
        best_score, best_loss = self.best
        if best_score is None or better(self.primary, score, best_score) or (
                score == best_score and loss < best_loss):
            self.best = (score, loss)
            self.best_epoch, self.best_weights = epoch + 1, self.model.get_weights()
        elif epoch + 1 - self.best_epoch >= self.patience:
            self.model.stop_training = True
        if (epoch + 1) % PROGRESS_EVERY == 0 or epoch == 0:
            self.out(f"  {self.name:<12} epoch {epoch + 1:>4}/{self.max_epochs}  "
                     f"loss {logs['loss']:.4f}  val_loss {loss:.4f}  "
                     f"val_{self.primary} {score:.4f}")

    def on_train_end(self, logs=None):
        self.model.set_weights(self.best_weights)


def seed_everything(seed: int) -> None:
    """Same seed, same machine, same model: seeds Python, numpy and TensorFlow and makes
    TensorFlow's ops deterministic."""
    # Layer and op names (which the exported model holds) count up within a process: start
    # them afresh, so a model trained after others is byte for byte the one trained alone.
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def fit(name: str, data: Dataset, split: Split, config: TrainConfig, primary: str,
        out: Printer) -> Trained:
    seed_everything(config.seed)
    schema, x = data.schema, data.x
    y = data.y.astype(np.float32) if schema.task != "multiclass" else data.y
    model = build(name, Inputs(schema, x[split.train], data.y[split.train]),
                  config.settings.get(name))
    stop = EarlyStopping(name, primary, x[split.validation], y[split.validation], config, out)
    # A whole epoch per call into TensorFlow: for models this small, the per-call overhead
    # is most of the time.
    model.steps_per_execution = math.ceil(len(split.train) / config.batch_size)
    rows = len(split.train)
    # One endless, reshuffled stream of batches: an iterator per epoch would cost more than
    # the epoch.
    batches = tf.data.Dataset.from_tensor_slices((x[split.train], y[split.train])).shuffle(
        rows, seed=config.seed, reshuffle_each_iteration=True).batch(config.batch_size).repeat()
    history = model.fit(batches, steps_per_epoch=math.ceil(rows / config.batch_size),
                        epochs=config.max_epochs, shuffle=False, verbose=0,
                        callbacks=[stop]).history
    history = {"loss": [float(v) for v in history["loss"]], **stop.history}
    # Predictions come one batch per call again (many batches per call retrace per row count).
    model.steps_per_execution, model.predict_function = 1, None
    out(f"  {name:<12} stopped after epoch {len(history['loss'])}, best validation "
        f"{primary} at epoch {stop.best_epoch}")

    validation, test = (model.predict(x[rows], verbose=0)
                        for rows in (split.validation, split.test))
    return Trained(name, model, history, stop.best_epoch,
                   scores(schema, data.y[split.validation], validation),
                   scores(schema, data.y[split.test], test), test)


def scores(schema: Schema, y: np.ndarray, output: np.ndarray) -> dict:
    return task_metrics(schema.task, y, output, THRESHOLD, schema.labels)


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
    """The row keyed by feature name, each value as a request sends it (numbers as the CSV
    wrote them, shortest float32 text; categories by name; missing as None)."""
    return {feature.name: feature.decode(float(np.format_float_positional(value, unique=True)))
            for feature, value in zip(schema.features, row)}


def run(data_path: Path, schema_path: Path, model_dir: Path, config: TrainConfig,
        policy: Policy, out: Printer = print) -> dict:
    """The whole training stage; returns metrics.json's content. The artifacts go to a new
    directory next to model_dir that replaces it once complete, so model_dir always holds one
    whole model (never a new model with an old evaluation.json, nor half a model)."""
    with replacing(model_dir) as staging:
        results, summary = _train(data_path, schema_path, staging, config, policy, out,
                                  model_dir)
    out(summary)
    return results


def _train(data_path: Path, schema_path: Path, model_dir: Path, config: TrainConfig,
           policy: Policy, out: Printer, final_dir: Path) -> tuple[dict, str]:
    started = time.perf_counter()
    trained_at = datetime.datetime.now(datetime.timezone.utc)
    schema = Schema.load(schema_path)
    data = load_dataset(data_path, schema)
    split = assign(data.ids, data.y, config.seed, config.validation_fraction,
                   config.test_fraction, dict(enumerate(schema.class_labels)))
    out(f"data: {data.path}, {data.rows} rows, {len(schema.features)} features, task "
        f"{schema.task}; split "
        f"{len(split.train)} train / {len(split.validation)} validation / {len(split.test)} test")

    trained = [fit(name, data, split, config, policy.primary_metric, out)
               for name in config.models]
    best = choose(trained, policy.primary_metric)
    out(f"candidate: {best.name} (validation {policy.primary_metric} "
        f"{best.validation[policy.primary_metric]:.4f})")

    content = export.to_tflite(best.model)
    lite = LiteRTModel(content)
    max_diff = export.parity(best.model, lite, export.parity_rows(data.x[split.test], schema),
                             export.parity_scale(schema, data.y[split.train]))
    (model_dir / "model.tflite").write_bytes(content)
    best.model.save(model_dir / "model.keras")

    test_x, test_y = data.x[split.test], data.y[split.test]
    evaluation = evaluate_model(lite, len(content), test_x, test_y, schema, THRESHOLD)
    results = {
        "metrics": evaluation.metrics,
        "performance": evaluation.performance,
        "task": schema.task,
        "candidate": best.name,
        "primary_metric": policy.primary_metric,
        "threshold": THRESHOLD,
        "models": {t.name: {"validation": t.validation, "test": t.test,
                            "epochs": len(t.history["loss"]), "best_epoch": t.best_epoch,
                            "parameters": t.model.count_params()} for t in trained},
        "parity": {**max_diff, "tolerance": export.PARITY_TOLERANCE},
        "split": {"train": len(split.train), "validation": len(split.validation),
                  "test": len(split.test)},
        "config": config.to_dict(),
        "history": {t.name: t.history for t in trained},
    }
    write_json(model_dir / "metrics.json", results)
    manifest = export.manifest(
        model_dir,
        data={"path": display_path(data.path), "sha256": data.sha256, "rows": data.rows},
        schema=schema.to_dict(),
        model={"architecture": best.name, "threshold": THRESHOLD,
               "primary_metric": policy.primary_metric,
               "primary_metric_value": evaluation.metrics[policy.primary_metric]},
        example=example_row(test_x[0], schema),
        trained_at=trained_at)
    # What the model learnt from, so that evaluate never scores it on those rows as a champion.
    manifest["trained_on"] = record(data.ids[np.r_[split.train, split.validation]])
    write_json(model_dir / "manifest.json", manifest)
    plots.write_all(model_dir, schema, results, data.x, data.y, test_y,
                    {t.name: t.test_outputs for t in trained})
    write_text(model_dir / "report.md", report.render(manifest, results))
    seconds = time.perf_counter() - started
    return results, report.summary(manifest, results, final_dir, seconds)
