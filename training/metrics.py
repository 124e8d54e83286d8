"""The metrics of each task (pure numpy), named as metrics.json, gate.toml and the report
name them.

`output` is the model's output for the rows: binary the positive label's probability ([N] or
[N, 1]), multiclass a probability per label [N, K], regression the value ([N] or [N, 1]).
Small and exact (a rank-based ROC AUC, no threshold buckets), so the gate can call them many
times.
"""
from __future__ import annotations

import numpy as np

# Each task's headline metrics, in the order the report shows them.
METRICS = {
    "binary": ("accuracy", "roc_auc", "f1", "precision", "recall", "log_loss"),
    "multiclass": ("accuracy", "macro_f1", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}
# True where a larger value is better; the gate and the model choice read the direction here.
HIGHER_IS_BETTER = {
    "accuracy": True, "roc_auc": True, "f1": True, "precision": True, "recall": True,
    "log_loss": False, "macro_f1": True, "rmse": False, "mae": False, "r2": True,
}
# Probabilities are float32: clip log loss at float32's resolution around 0 and 1.
EPSILON = 1e-7


def metrics_for(task: str) -> tuple[str, ...]:
    return METRICS[task]


def metric(name: str, y: np.ndarray, output: np.ndarray, threshold: float = 0.5) -> float:
    """One metric by name (what the gate's comparison needs); the task shows in the output's
    shape: [N, K] with K > 1 is multiclass."""
    output = _squeezed(output)
    if name in METRICS["regression"]:
        return _regression(y, output)[name]
    if output.ndim == 2:
        return _multiclass(y, output)[name]
    if name == "roc_auc":
        return roc_auc(y, output)
    if name == "log_loss":
        return log_loss(y, output)
    return _from_confusion(*confusion(y, output, threshold))[name]


def row_losses(name: str, y: np.ndarray, output: np.ndarray,
               threshold: float = 0.5) -> np.ndarray | None:
    """Each row's loss, for a metric that is its mean or moves with its mean alone: accuracy
    (1 for a wrong row), log_loss, mae (the absolute error), rmse (the square root of the mean
    squared error) and r2 (1 - the mean squared error over the target's variance, the same for
    any two models on the same rows). None for the others (roc_auc, f1, precision, recall,
    macro_f1), which no per-row loss adds up to. The gate compares two models on these."""
    output = _squeezed(output)
    if name in ("rmse", "r2", "mae"):
        error = output.astype(np.float64) - y.astype(np.float64)
        return np.abs(error) if name == "mae" else error ** 2
    if name == "accuracy":
        predicted = (np.argmax(output, axis=1) if output.ndim == 2
                     else (output >= threshold).astype(np.int64))
        return (predicted != y).astype(np.float64)
    if name == "log_loss":
        if output.ndim == 2:
            q = np.clip(output[np.arange(len(y)), y.astype(np.int64)].astype(np.float64),
                        EPSILON, 1.0)
            return -np.log(q)
        q = np.clip(output.astype(np.float64), EPSILON, 1 - EPSILON)
        return -(y * np.log(q) + (1 - y) * np.log(1 - q))
    return None


def task_metrics(task: str, y: np.ndarray, output: np.ndarray, threshold: float = 0.5,
                 labels: tuple[str, ...] = ()) -> dict:
    """Every metric of the task, with the figures behind them: binary and multiclass the
    confusion matrix (rows actual, columns predicted), multiclass precision and recall per
    label (`labels`, in output order)."""
    output = _squeezed(output)
    if task == "binary":
        return classification_metrics(y, output, threshold)
    if task == "regression":
        return _regression(y, output)
    matrix = multiclass_confusion(y, output)
    return {**_multiclass(y, output), "per_class": {
        label: {"precision": p, "recall": r, "support": int(matrix[i].sum())}
        for i, (label, p, r) in enumerate(zip(labels, *_per_class(matrix)[:2]))},
        "confusion_matrix": matrix.tolist()}


def confusion(y: np.ndarray, p: np.ndarray, threshold: float) -> tuple[int, int, int, int]:
    """(true negatives, false positives, false negatives, true positives)."""
    predicted = p >= threshold
    actual = y == 1
    return (int(np.sum(~predicted & ~actual)), int(np.sum(predicted & ~actual)),
            int(np.sum(~predicted & actual)), int(np.sum(predicted & actual)))


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """The probability that a random positive scores above a random negative (ties count half)."""
    order = np.argsort(p, kind="stable")
    ranks = np.empty(len(p))
    sorted_p = p[order]
    # Average rank within each run of equal scores.
    starts = np.flatnonzero(np.r_[True, sorted_p[1:] != sorted_p[:-1]])
    ends = np.r_[starts[1:], len(p)]
    ranks[order] = np.repeat((starts + ends + 1) / 2, ends - starts)
    positives = int(np.sum(y == 1))
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    q = np.clip(p.astype(np.float64), EPSILON, 1 - EPSILON)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))


def classification_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    tn, fp, fn, tp = confusion(y, p, threshold)
    return {
        **_from_confusion(tn, fp, fn, tp),
        "roc_auc": roc_auc(y, p),
        "log_loss": log_loss(y, p),
        "confusion_matrix": [[tn, fp], [fn, tp]],
    }


def multiclass_confusion(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Counts [K, K]: row the actual label, column the most probable one."""
    k = p.shape[1]
    return np.bincount(y.astype(np.int64) * k + np.argmax(p, axis=1),
                       minlength=k * k).reshape(k, k)


def roc_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    order = np.argsort(-p, kind="stable")
    sorted_p, sorted_y = p[order], y[order]
    last_of_run = np.r_[sorted_p[1:] != sorted_p[:-1], True]
    tp = np.cumsum(sorted_y == 1)[last_of_run]
    fp = np.cumsum(sorted_y != 1)[last_of_run]
    return np.r_[0.0, fp / max(fp[-1], 1)], np.r_[0.0, tp / max(tp[-1], 1)]


def _squeezed(output: np.ndarray) -> np.ndarray:
    output = np.asarray(output)
    return output[:, 0] if output.ndim == 2 and output.shape[1] == 1 else output


def _from_confusion(tn: int, fp: int, fn: int, tp: int) -> dict:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": (tp + tn) / (tn + fp + fn + tp), "precision": precision,
            "recall": recall, "f1": f1}


def _per_class(matrix: np.ndarray) -> tuple[list[float], list[float], list[float]]:
    """Precision, recall and F1 of each label (0 where undefined, as for binary)."""
    hits = np.diag(matrix).astype(np.float64)
    predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, actual, out=np.zeros_like(hits), where=actual > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(hits), where=total > 0)
    return precision.tolist(), recall.tolist(), f1.tolist()


def _multiclass(y: np.ndarray, p: np.ndarray) -> dict:
    matrix = multiclass_confusion(y, p)
    # Macro F1 over the labels present in the truth or the predictions.
    seen = (matrix.sum(axis=0) + matrix.sum(axis=1)) > 0
    f1 = np.asarray(_per_class(matrix)[2])[seen]
    q = np.clip(p[np.arange(len(y)), y.astype(np.int64)].astype(np.float64), EPSILON, 1.0)
    return {"accuracy": float(np.trace(matrix) / len(y)), "macro_f1": float(f1.mean()),
            "log_loss": float(-np.mean(np.log(q)))}


def _regression(y: np.ndarray, value: np.ndarray) -> dict:
    error = value.astype(np.float64) - y.astype(np.float64)
    spread = float(np.sum((y - np.mean(y)) ** 2))
    return {"rmse": float(np.sqrt(np.mean(error ** 2))), "mae": float(np.mean(np.abs(error))),
            "r2": 1 - float(np.sum(error ** 2)) / spread if spread else float("nan")}
