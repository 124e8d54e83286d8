"""Classification metrics over probabilities of the positive label (pure numpy).

Small and exact (a rank-based ROC AUC, no threshold buckets), so the gate's bootstrap can
call them thousands of times.
"""
from __future__ import annotations

import numpy as np

# True where a larger value is better; the gate and the model choice read the direction here.
HIGHER_IS_BETTER = {
    "accuracy": True, "roc_auc": True, "f1": True, "precision": True, "recall": True,
    "log_loss": False,
}
# Probabilities are float32: clip log loss at float32's resolution around 0 and 1.
EPSILON = 1e-7


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


def metric(name: str, y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    """One metric by name (what the gate's bootstrap needs)."""
    if name == "roc_auc":
        return roc_auc(y, p)
    if name == "log_loss":
        return log_loss(y, p)
    return _from_confusion(*confusion(y, p, threshold))[name]


def classification_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    tn, fp, fn, tp = confusion(y, p, threshold)
    return {
        **_from_confusion(tn, fp, fn, tp),
        "roc_auc": roc_auc(y, p),
        "log_loss": log_loss(y, p),
        "confusion_matrix": [[tn, fp], [fn, tp]],
    }


def roc_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    order = np.argsort(-p, kind="stable")
    sorted_p, sorted_y = p[order], y[order]
    last_of_run = np.r_[sorted_p[1:] != sorted_p[:-1], True]
    tp = np.cumsum(sorted_y == 1)[last_of_run]
    fp = np.cumsum(sorted_y != 1)[last_of_run]
    return np.r_[0.0, fp / max(fp[-1], 1)], np.r_[0.0, tp / max(tp[-1], 1)]


def _from_confusion(tn: int, fp: int, fn: int, tp: int) -> dict:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": (tp + tn) / (tn + fp + fn + tp), "precision": precision,
            "recall": recall, "f1": f1}
