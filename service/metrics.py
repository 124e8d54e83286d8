"""Prometheus metrics. Under gunicorn with several workers, gunicorn_conf.py points
PROMETHEUS_MULTIPROC_DIR at a fresh directory before any worker imports this module, and a
scrape (any worker) adds up every worker's numbers; otherwise the default registry serves."""
from __future__ import annotations

import os

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge,
                               Histogram, disable_created_metrics, generate_latest,
                               multiprocess)

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


def exposition() -> tuple[bytes, str]:
    """The text a scrape gets, and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
