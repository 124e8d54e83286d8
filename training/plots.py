"""The report's figures as PNG files (matplotlib without a display), per task: ROC curve
for binary only, a confusion matrix for classification, predicted against actual and the
residuals for regression."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display in CI or containers; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from training.metrics import roc_auc, roc_curve  # noqa: E402
from contract.schema import Schema  # noqa: E402

FILES = {
    "training_curves": "training_curves.png",
    "feature_distributions": "feature_distributions.png",
    "roc_curve": "roc_curve.png",
    "confusion_matrix": "confusion_matrix.png",
    "predicted_vs_actual": "predicted_vs_actual.png",
    "residuals": "residuals.png",
}
# What each task's training loss is called (training/models.py LOSSES), for the figures and the
# report.
LOSS_NAMES = {"binary": "binary cross-entropy", "multiclass": "cross-entropy",
              "regression": "mean squared error"}
BY_TASK = {
    "binary": ("training_curves", "feature_distributions", "roc_curve", "confusion_matrix"),
    "multiclass": ("training_curves", "feature_distributions", "confusion_matrix"),
    "regression": ("training_curves", "feature_distributions", "predicted_vs_actual",
                   "residuals"),
}


def files_for(task: str) -> dict:
    """The plots a model of `task` gets: name -> file name."""
    return {name: FILES[name] for name in BY_TASK[task]}


def write_all(model_dir: Path, schema: Schema, results: dict, x: np.ndarray, y: np.ndarray,
              test_y: np.ndarray, test_outputs: dict) -> None:
    """Every plot of the task into `model_dir`: `x`, `y` all rows, `test_outputs` each
    model's output on the test split, the candidate's first."""
    files = {name: model_dir / file for name, file in files_for(schema.task).items()}
    training_curves(results["history"], results["primary_metric"], schema.task,
                    files["training_curves"])
    feature_distributions(x, y, schema, files["feature_distributions"])
    candidate = np.asarray(test_outputs[results["candidate"]])
    if "roc_curve" in files:
        roc_curves(test_y, {n: np.asarray(o)[:, 0] for n, o in test_outputs.items()},
                   files["roc_curve"])
    if "confusion_matrix" in files:
        confusion_matrix(results["metrics"]["confusion_matrix"], schema.class_labels,
                         files["confusion_matrix"])
    if "predicted_vs_actual" in files:
        predicted_vs_actual(test_y, candidate[:, 0], schema.target,
                            files["predicted_vs_actual"])
        residuals(test_y, candidate[:, 0], schema.target, files["residuals"])


def training_curves(histories: dict, primary: str, task: str, path: Path) -> None:
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for name, history in histories.items():
        epochs = np.arange(1, len(history["loss"]) + 1)
        line, = loss_ax.plot(epochs, history["loss"], label=f"{name} train")
        loss_ax.plot(epochs, history["val_loss"], "--", color=line.get_color(),
                     label=f"{name} validation")
        metric_ax.plot(epochs, history[f"val_{primary}"], color=line.get_color(), label=name)
    loss_ax.set(title=f"Loss ({LOSS_NAMES[task]})", xlabel="epoch", ylabel="loss")
    metric_ax.set(title=f"Validation {primary} (picks the epoch and the model)", xlabel="epoch",
                  ylabel=primary)
    loss_ax.legend()
    metric_ax.legend()
    _save(fig, path)


def roc_curves(y: np.ndarray, probabilities: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, p in probabilities.items():
        fpr, tpr = roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc(y, p):.4f})")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    ax.set(title="ROC curve, test split", xlabel="false positive rate",
           ylabel="true positive rate")
    ax.legend(loc="lower right")
    _save(fig, path)


def confusion_matrix(matrix: list, labels: tuple, path: Path) -> None:
    size = 3 + 0.6 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 0.5, size))
    ax.imshow(matrix, cmap="Blues")
    for (row, column), count in np.ndenumerate(np.asarray(matrix)):
        ax.text(column, row, str(count), ha="center", va="center", fontsize=12)
    ticks = list(range(len(labels)))
    ax.set(title="Confusion matrix, test split", xlabel="predicted", ylabel="actual",
           xticks=ticks, yticks=ticks, xticklabels=labels, yticklabels=labels)
    _save(fig, path)


def predicted_vs_actual(y: np.ndarray, predicted: np.ndarray, target: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(y, predicted, s=12, alpha=0.7)
    low, high = float(min(y.min(), predicted.min())), float(max(y.max(), predicted.max()))
    ax.plot([low, high], [low, high], ":", color="grey", label="perfect")
    ax.set(title="Predicted against actual, test split", xlabel=f"actual {target}",
           ylabel=f"predicted {target}")
    ax.legend(loc="upper left")
    _save(fig, path)


def residuals(y: np.ndarray, predicted: np.ndarray, target: str, path: Path) -> None:
    fig, (scatter_ax, hist_ax) = plt.subplots(1, 2, figsize=(10, 4))
    error = predicted - y
    scatter_ax.scatter(predicted, error, s=12, alpha=0.7)
    scatter_ax.axhline(0, linestyle=":", color="grey")
    scatter_ax.set(title="Residuals against prediction, test split",
                   xlabel=f"predicted {target}", ylabel="predicted - actual")
    hist_ax.hist(error, bins=30)
    hist_ax.set(title="Residuals, test split", xlabel="predicted - actual", ylabel="rows")
    _save(fig, path)


def feature_distributions(x: np.ndarray, y: np.ndarray, schema: Schema, path: Path) -> None:
    """One panel per feature over all rows (missing values left out): histograms, or counts
    per category; for classification one series per label, to show what separates them."""
    columns = 5
    rows = math.ceil(len(schema.features) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 2.2 * rows), squeeze=False)
    groups = ([(label, y == i) for i, label in enumerate(schema.class_labels)]
              if schema.task != "regression" else [("all rows", np.ones(len(y), dtype=bool))])
    for ax, (i, feature) in zip(axes.flat, enumerate(schema.features)):
        present = ~np.isnan(x[:, i])
        if feature.is_category:
            positions = np.arange(len(feature.categories))
            width = 0.8 / len(groups)
            for g, (label, rows_of) in enumerate(groups):
                counts = np.bincount(x[present & rows_of, i].astype(int),
                                     minlength=len(feature.categories))
                ax.bar(positions + g * width, counts, width, label=label)
            ax.set_xticks(positions + 0.4 - width / 2, feature.categories, fontsize=7)
        else:
            bins = np.histogram_bin_edges(x[present, i], bins=30)
            for label, rows_of in groups:
                ax.hist(x[present & rows_of, i], bins=bins, alpha=0.6, label=label)
        ax.set_title(feature.name, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(schema.features):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"Feature distributions by {schema.target} (all rows)"
                 if schema.task != "regression" else "Feature distributions (all rows)")
    _save(fig, path)


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
