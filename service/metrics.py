"""Prometheus metrics. Under gunicorn with several workers, gunicorn_conf.py points
PROMETHEUS_MULTIPROC_DIR at a fresh directory before any worker imports this module, and a
scrape (any worker) adds up every worker's numbers; otherwise the default registry serves."""
from __future__ import annotations

import os

import numpy as np
from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter,
                               Gauge, Histogram, disable_created_metrics, generate_latest,
                               multiprocess)

from contract.schema import Schema

# The *_created series double the output and no dashboard of ours reads them.
disable_created_metrics()

REQUESTS = Counter("http_requests_total", "HTTP requests answered, by route and status",
                   ["method", "route", "status"])
# Buckets from 100 us: a one-row prediction takes well under a millisecond.
LATENCY = Histogram("http_request_duration_seconds", "Time to answer a request, by route",
                    ["route"], buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                        0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
ROWS = Counter("predict_rows_total", "Rows predicted (one request may carry many)",
               ["model_name", "model_version"])
# An info metric (a gauge of 1 with labels): prometheus_client's Info does not work across
# processes. "max" keeps one series, not one per worker.
MODEL = Gauge("model_info", "The model this service loaded",
              ["model_name", "model_version", "sha256"], multiprocess_mode="max")


# The distribution of the predictions (what a canary's analysis compares between versions).
PREDICTIONS = Counter("predictions", "Rows predicted, by predicted label (classification)",
                      ["label"])
VALUE_NAME, VALUE_HELP = "prediction_value", (
    "Binary: the positive label's probability; multiclass: the top label's probability; "
    "regression: the predicted value")
PROBABILITY_BUCKETS = tuple(round(tenth / 10, 1) for tenth in range(1, 11))
# The manifest records no target quantiles: 1, 2 and 5 times each power of ten from 0.01 to
# 10,000, both signs and 0, resolve any target's scale within a factor of 2.5, and are the same
# for every version a canary compares.
VALUE_BUCKETS = tuple(sorted({sign * step * 10.0 ** power for sign in (-1, 1)
                              for step in (1, 2, 5) for power in range(-2, 5)} | {0.0}))
_value_histograms: dict[tuple, Histogram] = {}


def _value_histogram(buckets: tuple) -> Histogram:
    """prediction_value with the buckets of the task. One model a process in production; the
    tests load models of every task in one process, so the default registry (used without
    gunicorn) holds the histogram of the model loaded last."""
    histogram = _value_histograms.get(buckets)
    if histogram is None:
        histogram = _value_histograms[buckets] = Histogram(VALUE_NAME, VALUE_HELP,
                                                           buckets=buckets, registry=None)
    for other in _value_histograms.values():
        try:
            REGISTRY.unregister(other)
        except KeyError:
            pass  # not the registered one
    REGISTRY.register(histogram)
    return histogram


# The labelled children, looked up once: labels() validates and locks on every call. Bounded,
# as a client chooses the method (a label too).
_children: dict[tuple, object] = {}


def _child(metric, *labels):
    child = _children.get((metric, labels))
    if child is None:
        child = metric.labels(*labels)
        if len(_children) < 1000:
            _children[(metric, labels)] = child
    return child


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request and its latency."""
    _child(REQUESTS, method, route, status).inc()
    _child(LATENCY, route).observe(seconds)


def count_rows(model_name: str, model_version: str, rows: int) -> None:
    _child(ROWS, model_name, model_version).inc(rows)


# Up to this many rows, one at a time: numpy's fixed cost (about 30 us) pays off only on a
# batch.
FEW_ROWS = 8


class PredictionMetrics:
    """Counts one model's predictions (predictions_total{label}, not for regression) and
    observes their values (prediction_value); a batch of more than FEW_ROWS at once."""

    def __init__(self, schema: Schema, threshold: float):
        self.task = schema.task
        self.threshold = threshold  # binary: the positive label from this probability on
        self.labels = ([] if schema.task == "regression" else
                       [PREDICTIONS.labels(label) for label in schema.class_labels])
        buckets = VALUE_BUCKETS if schema.task == "regression" else PROBABILITY_BUCKETS
        self.values = _value_histogram(buckets)
        self.bounds = np.array((*buckets, np.inf))  # as the histogram has them

    def observe(self, outputs: np.ndarray) -> None:
        """`outputs` as the model gives them, [N, K] (Predictor.predict)."""
        if len(outputs) <= FEW_ROWS:
            self._observe_rows(outputs.tolist())
            return
        if self.task == "binary":
            values = outputs[:, 0]
            labels = np.bincount(values >= self.threshold, minlength=2)
        elif self.task == "multiclass":
            values = outputs.max(axis=1)
            labels = np.bincount(outputs.argmax(axis=1), minlength=len(self.labels))
        else:
            values, labels = outputs[:, 0], ()
        for child, count in zip(self.labels, labels):
            if count:
                child.inc(int(count))
        observe_all(self.values, values, self.bounds)

    def _observe_rows(self, rows: list) -> None:
        for row in rows:
            if self.task == "binary":
                value = row[0]
                self.labels[value >= self.threshold].inc()
            elif self.task == "multiclass":
                value = max(row)
                self.labels[row.index(value)].inc()
            else:
                value = row[0]
            self.values.observe(value)


def observe_all(histogram: Histogram, values: np.ndarray, bounds: np.ndarray) -> None:
    """Histogram.observe for each value, in one step: the buckets by numpy, then one
    increment of each bucket that got any and of the sum (prometheus_client observes one value
    at a time; tests/test_service_api.py checks that both give the same series). A NaN, which
    no model that passed its warm-up should give, goes to +Inf, not out of range."""
    index = np.minimum(np.searchsorted(bounds, values), len(bounds) - 1)
    counts = np.bincount(index, minlength=len(bounds))
    for bucket in np.flatnonzero(counts):
        histogram._buckets[bucket].inc(int(counts[bucket]))
    histogram._sum.inc(float(np.nansum(values)))


def exposition() -> tuple[bytes, str]:
    """The text a scrape gets, and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
