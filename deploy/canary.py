"""Canary analysis: does the new release serve as well as the stable one? Pure logic, no I/O.

The Kubernetes driver (deploy/kubernetes_driver.py) runs the canary pods next to the stable
ones behind the same Service, scrapes every pod's own /metrics at the start and at each look,
and hands the texts to an `Analysis`. The analysis adds up each track's increase since the start
(a counter that went down was reset by a restart: its whole value is the increase, as
Prometheus' increase() takes it) and compares the canary with the stable pods on the requests
to the /v1 API:
- errors: the share of 5xx answers (Fisher's exact test, one-sided);
- latency: http_request_duration_seconds (Mann-Whitney U test on the histogram's buckets,
  one-sided, and the 95th percentile as Prometheus' histogram_quantile estimates it);
- predictions: predictions_total{label} and the prediction_value histogram (chi-squared tests
  of homogeneity), when the release exports them.
A check fails only when the difference is both significant and large enough to matter (the
thresholds below): with thousands of requests a test finds negligible differences significant.
Nothing is judged before each track has answered `min_requests` requests. Every look tests at
alpha / (the number of looks), so looking often does not make a false abort more likely
(Bonferroni). The first failed check aborts; the release is promoted only when the window ends
with every check passed; a window that ends with too few requests aborts (not judged, not
promoted).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from prometheus_client.parser import text_string_to_metric_families
# scipy loads scipy.stats on first use: every deploy command imports this module (through
# the driver), and only a canary needs the tests (0.7 s of start-up otherwise).
import scipy

# What the analysis counts: the prediction API, not the probes and scrapes.
API_PREFIX = "/v1"
CANARY, STABLE = "canary", "stable"


@dataclass(frozen=True)
class Thresholds:
    min_requests: int = 200
    alpha: float = 0.01
    # Abort when the canary's 5xx share is higher by more than this (1 point)...
    max_error_increase: float = 0.01
    # ...its 95th percentile latency more than 1.5 times and 5 ms above the stable pods'...
    latency_quantile: float = 0.95
    max_latency_ratio: float = 1.5
    min_latency_increase_s: float = 0.005
    # ...or its predictions distributed differently: total variation distance (half the sum
    # of the absolute differences of the shares) of the labels, of the value histogram.
    max_label_distance: float = 0.10
    max_value_distance: float = 0.15


@dataclass
class Counts:
    """What one pod (or a track, summed) has counted: API requests, their 5xx, and histograms as
    {upper bound: cumulative count}."""
    requests: int = 0
    errors: int = 0
    latency: Counter = field(default_factory=Counter)
    labels: Counter = field(default_factory=Counter)
    values: Counter = field(default_factory=Counter)
    # whether the pod exports predictions_total / prediction_value at all
    has_predictions: bool = False

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.requests + other.requests, self.errors + other.errors,
                      _plus(self.latency, other.latency), _plus(self.labels, other.labels),
                      _plus(self.values, other.values),
                      self.has_predictions or other.has_predictions)

    def since(self, before: Counts | None) -> Counts:
        """The increase since `before` (None: since the pod started)."""
        if before is None or self.requests < before.requests:  # new or restarted pod
            return self
        return Counts(self.requests - before.requests, self.errors - before.errors,
                      _minus(self.latency, before.latency), _minus(self.labels, before.labels),
                      _minus(self.values, before.values), self.has_predictions)


# Counter's own + and - drop the keys whose count is 0: a histogram needs all its buckets.
def _plus(a: Counter, b: Counter) -> Counter:
    return Counter({key: a.get(key, 0) + b.get(key, 0) for key in a.keys() | b.keys()})


def _minus(now: Counter, before: Counter) -> Counter:
    return Counter({key: now[key] - before.get(key, 0) for key in now})


def parse(text: str) -> Counts:
    """A pod's /metrics (Prometheus text format)."""
    counts = Counts()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels, value = sample.labels, int(sample.value)
            if sample.name == "http_requests_total" and labels.get("route", "").startswith(
                    API_PREFIX):
                counts.requests += value
                if labels.get("status", "").startswith("5"):
                    counts.errors += value
            elif sample.name == "http_request_duration_seconds_bucket" and labels.get(
                    "route", "").startswith(API_PREFIX):
                counts.latency[float(labels["le"])] += value
            elif sample.name == "predictions_total":
                counts.labels[labels["label"]] += value
                counts.has_predictions = True
            elif sample.name == "prediction_value_bucket":
                counts.values[float(labels["le"])] += value
                counts.has_predictions = True
    return counts


def buckets(cumulative: Counter, bounds: list[float] | None = None) -> np.ndarray:
    """The count in each bucket of a cumulative histogram, by upper bound (`bounds`: those
    only, the buckets two versions share; default all)."""
    bounds = sorted(cumulative) if bounds is None else bounds
    totals = np.array([cumulative[b] for b in bounds], dtype=float)
    return np.diff(totals, prepend=0.0)


def quantile(q: float, cumulative: Counter) -> float:
    """histogram_quantile(q, ...) as Prometheus computes it: linear inside the bucket."""
    bounds = sorted(cumulative)
    counts = buckets(cumulative, bounds)
    total = counts.sum()
    if not total:
        return math.nan
    rank, seen, lower = q * total, 0.0, 0.0
    for bound, count in zip(bounds, counts):
        if seen + count >= rank and count:
            if math.isinf(bound):  # beyond the last finite bucket: its bound, as Prometheus
                return lower
            return lower + (bound - lower) * (rank - seen) / count
        seen += count
        lower = bound if not math.isinf(bound) else lower
    return lower


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a / a.sum() - b / b.sum()).sum() / 2)


def _homogeneity(a: np.ndarray, b: np.ndarray) -> float:
    """p-value of the chi-squared test that two count vectors share one distribution."""
    keep = (a + b) > 0
    if keep.sum() < 2:  # everything in one category on both sides: the same distribution
        return 1.0
    return float(scipy.stats.chi2_contingency(np.array([a[keep], b[keep]])).pvalue)


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool | None  # None: not judged (nothing to compare)
    canary: str
    stable: str
    detail: str


def compare(canary: Counts, stable: Counts, limits: Thresholds, alpha: float) -> list[Check]:
    """Each comparison of the canary with the stable pods, at significance level `alpha`."""
    checks = []
    # errors
    canary_rate = canary.errors / canary.requests if canary.requests else 0.0
    stable_rate = stable.errors / stable.requests if stable.requests else 0.0
    p = scipy.stats.fisher_exact([[canary.errors, canary.requests - canary.errors],
                                  [stable.errors, stable.requests - stable.errors]],
                                 alternative="greater").pvalue
    failed = p < alpha and canary_rate - stable_rate > limits.max_error_increase
    checks.append(Check("5xx share", not failed,
                        f"{canary_rate:.2%} ({canary.errors} of {canary.requests})",
                        f"{stable_rate:.2%} ({stable.errors} of {stable.requests})",
                        f"Fisher p={p:.2g}; fails when p<{alpha:.2g} and higher by more "
                        f"than {limits.max_error_increase * 100:g} percentage point(s)"))
    # latency
    bounds = sorted(canary.latency.keys() & stable.latency.keys())
    canary_buckets = buckets(canary.latency, bounds)
    stable_buckets = buckets(stable.latency, bounds)
    if canary_buckets.sum() and stable_buckets.sum():
        # Each request as the index of its bucket: the ranks the test needs (ties included).
        index = np.arange(len(bounds))
        p = scipy.stats.mannwhitneyu(np.repeat(index, canary_buckets.astype(int)),
                                     np.repeat(index, stable_buckets.astype(int)),
                                     alternative="greater").pvalue
        q = limits.latency_quantile
        canary_q, stable_q = quantile(q, canary.latency), quantile(q, stable.latency)
        failed = (p < alpha and canary_q > stable_q * limits.max_latency_ratio
                  and canary_q - stable_q > limits.min_latency_increase_s)
        checks.append(Check(f"latency p{q * 100:g}", not failed, f"{canary_q * 1000:.2f} ms",
                            f"{stable_q * 1000:.2f} ms",
                            f"Mann-Whitney p={p:.2g}; fails when p<{alpha:.2g}, more than "
                            f"{limits.max_latency_ratio:g}x and more than "
                            f"+{limits.min_latency_increase_s * 1000:g} ms"))
    else:
        checks.append(Check("latency", None, "-", "-", "no latency histogram to compare"))
    # predictions
    if not (canary.has_predictions and stable.has_predictions):
        missing = " and ".join(track for track, counts in ((CANARY, canary), (STABLE, stable))
                               if not counts.has_predictions)
        checks.append(Check("predictions", None, "-", "-",
                            f"not compared: the {missing} pods export no predictions_total"))
        return checks
    names = sorted(set(canary.labels) | set(stable.labels))
    a = np.array([canary.labels[n] for n in names], dtype=float)
    b = np.array([stable.labels[n] for n in names], dtype=float)
    if a.sum() and b.sum():
        p, distance = _homogeneity(a, b), _distance(a, b)
        failed = p < alpha and distance > limits.max_label_distance
        checks.append(Check("predicted labels", not failed, _shares(names, a),
                            _shares(names, b),
                            f"chi-squared p={p:.2g}, distance {distance:.2f}; fails when "
                            f"p<{alpha:.2g} and distance > {limits.max_label_distance:g}"))
    bounds = sorted(canary.values.keys() & stable.values.keys())
    a, b = buckets(canary.values, bounds), buckets(stable.values, bounds)
    if a.sum() and b.sum():
        p, distance = _homogeneity(a, b), _distance(a, b)
        failed = p < alpha and distance > limits.max_value_distance
        checks.append(Check("prediction values", not failed,
                            f"median {quantile(0.5, canary.values):.3g}",
                            f"median {quantile(0.5, stable.values):.3g}",
                            f"chi-squared p={p:.2g}, distance {distance:.2f}; fails when "
                            f"p<{alpha:.2g} and distance > {limits.max_value_distance:g}"))
    return checks


def _shares(names: list[str], counts: np.ndarray) -> str:
    return ", ".join(f"{name} {count / counts.sum():.0%}" for name, count in zip(names, counts))


@dataclass(frozen=True)
class Verdict:
    decision: str  # "promote", "abort", or "continue" (not decided yet)
    reason: str
    checks: list[Check]
    canary: Counts
    stable: Counts


class Analysis:
    """Looks at the pods `looks` times over the window; `baseline` first, then `look` each time."""

    def __init__(self, limits: Thresholds, looks: int):
        self.limits, self.looks = limits, max(1, looks)
        self.alpha = limits.alpha / self.looks
        self.start: dict[str, Counts] = {}

    def baseline(self, scrapes: dict[str, tuple[str, str]]) -> None:
        """scrapes: {pod: (track, /metrics text)}."""
        self.start = {pod: parse(text) for pod, (_, text) in scrapes.items()}

    def look(self, scrapes: dict[str, tuple[str, str]], final: bool) -> Verdict:
        tracks = {CANARY: Counts(), STABLE: Counts()}
        for pod, (track, text) in scrapes.items():
            tracks[track] = tracks[track] + parse(text).since(self.start.get(pod))
        canary, stable = tracks[CANARY], tracks[STABLE]
        checks = compare(canary, stable, self.limits, self.alpha)
        enough = min(canary.requests, stable.requests) >= self.limits.min_requests
        failed = [c for c in checks if c.passed is False]
        if enough and failed:
            decision = "abort"
            reason = "; ".join(f"{c.name}: canary {c.canary} against stable {c.stable}"
                               for c in failed)
        elif not enough:
            decision = "abort" if final else "continue"
            reason = (f"too few requests to judge: canary {canary.requests}, stable "
                      f"{stable.requests}, {self.limits.min_requests} needed on each")
        else:
            decision = "promote" if final else "continue"
            reason = "every check passed"
        return Verdict(decision, reason, checks, canary, stable)


def report(verdict: Verdict, title: str) -> str:
    """The verdict with its figures, as Markdown (readable as plain text too)."""
    lines = [f"### {title}: {verdict.decision}", "", verdict.reason, "",
             "| check | canary | stable | result | rule |", "| --- | --- | --- | --- | --- |"]
    for check in verdict.checks:
        result = {True: "pass", False: "FAIL", None: "not judged"}[check.passed]
        lines.append(f"| {check.name} | {check.canary} | {check.stable} | {result} | "
                     f"{check.detail} |")
    return "\n".join(lines) + "\n"
