"""The report's figures as PNG files (matplotlib without a display)."""
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
    "roc_curve": "roc_curve.png",
    "confusion_matrix": "confusion_matrix.png",
    "feature_distributions": "feature_distributions.png",
}


def training_curves(histories: dict, path: Path) -> None:
    fig, (loss_ax, auc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for name, history in histories.items():
        epochs = np.arange(1, len(history["loss"]) + 1)
        line, = loss_ax.plot(epochs, history["loss"], label=f"{name} train")
        loss_ax.plot(epochs, history["val_loss"], "--", color=line.get_color(),
                     label=f"{name} validation")
        auc_ax.plot(epochs, history["val_auc"], color=line.get_color(), label=name)
    loss_ax.set(title="Loss (binary cross-entropy)", xlabel="epoch", ylabel="loss")
    auc_ax.set(title="Validation ROC AUC", xlabel="epoch", ylabel="ROC AUC")
    loss_ax.legend()
    auc_ax.legend()
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
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(matrix, cmap="Blues")
    for (row, column), count in np.ndenumerate(np.asarray(matrix)):
        ax.text(column, row, str(count), ha="center", va="center", fontsize=14)
    ax.set(title="Confusion matrix, test split", xlabel="predicted", ylabel="actual",
           xticks=[0, 1], yticks=[0, 1], xticklabels=labels, yticklabels=labels)
    _save(fig, path)


def feature_distributions(x: np.ndarray, y: np.ndarray, schema: Schema, path: Path) -> None:
    """One histogram per feature, the two classes overlaid: which features separate them."""
    columns = 5
    rows = math.ceil(len(schema.features) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 2.2 * rows), squeeze=False)
    labels = (schema.negative_label, schema.positive_label)
    for ax, (i, feature) in zip(axes.flat, enumerate(schema.features)):
        bins = np.histogram_bin_edges(x[:, i], bins=30)
        for label, value in zip(labels, (0, 1)):
            ax.hist(x[y == value, i], bins=bins, alpha=0.6, label=label)
        ax.set_title(feature.name, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(schema.features):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"Feature distributions by {schema.target} (all rows)")
    _save(fig, path)


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
