"""The canary analysis (deploy/canary.py) on /metrics texts as the service writes them: the
same metric names, written by prometheus_client. The canary on a real cluster is in
tests/test_kubernetes.py."""
from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from deploy.canary import Analysis, Counts, Thresholds, parse, quantile, report

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5)
PREDICT = "/v1/models/{name}:predict"


class Pod:
    """A pod's metrics: what it answered, how fast, what it predicted."""

    def __init__(self, predictions: bool = True):
        self.registry = CollectorRegistry()
        self.requests = Counter("http_requests_total", "", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("http_request_duration_seconds", "", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        if predictions:
            self.labels = Counter("predictions_total", "", ["label"], registry=self.registry)
            self.values = Histogram("prediction_value", "", registry=self.registry,
                                    buckets=[round(i / 10, 1) for i in range(1, 11)])
        self.predictions = predictions

    def serve(self, n: int, seconds: float = 0.0008, errors: int = 0, positive: float = 0.3,
              rng=None, route: str = PREDICT) -> Pod:
        rng = rng or np.random.default_rng(0)
        for i in range(n):
            status = "500" if i < errors else "200"
            self.requests.labels("POST", route, status).inc()
            self.latency.labels(route).observe(seconds * rng.uniform(0.7, 1.3))
            if self.predictions and status == "200" and route == PREDICT:
                p = rng.uniform(0.5, 1.0) if rng.uniform() < positive else rng.uniform(0, 0.5)
                self.labels.labels("malignant" if p >= 0.5 else "benign").inc()
                self.values.observe(p)
        return self

    def text(self) -> str:
        return generate_latest(self.registry).decode()


def judge(canary: Pod, stable: Pod, looks: int = 1, final: bool = True, **limits):
    """The verdict on traffic the pods served after the baseline (an empty one)."""
    analysis = Analysis(Thresholds(**limits), looks)
    analysis.baseline({})
    return analysis.look({"c": ("canary", canary.text()), "s": ("stable", stable.text())},
                         final)


def test_parse_counts_the_api_only_and_its_5xx():
    pod = Pod().serve(30, errors=3)
    pod.serve(50, route="/readyz")  # probes and scrapes are not the release's traffic
    counts = parse(pod.text())
    assert (counts.requests, counts.errors) == (30, 3)
    assert counts.latency[float("inf")] == 30
    assert sum(counts.labels.values()) == 27 and counts.has_predictions
    assert counts.values[float("inf")] == 27


def test_increase_since_the_baseline_and_across_a_restart():
    before = parse(Pod().serve(100, errors=1).text())
    after = parse(Pod().serve(150, errors=4).text())
    increase = after.since(before)
    assert (increase.requests, increase.errors) == (50, 3)
    assert increase.latency[float("inf")] == 50
    restarted = parse(Pod().serve(20).text())  # fewer than before: the counters started over
    assert restarted.since(before).requests == 20
    assert after.since(None).requests == 150  # a pod that appeared after the baseline


def test_quantile_interpolates_inside_the_bucket_as_prometheus():
    counts = Counts(latency={0.001: 50, 0.002: 100, float("inf"): 100})
    assert quantile(0.5, counts.latency) == pytest.approx(0.001)
    assert quantile(0.75, counts.latency) == pytest.approx(0.0015)
    assert quantile(0.95, Counts(latency={0.001: 0, float("inf"): 10}).latency) == 0.001


def test_a_release_that_serves_as_well_is_promoted():
    verdict = judge(Pod().serve(400, rng=np.random.default_rng(1)),
                    Pod().serve(800, rng=np.random.default_rng(2)))
    assert verdict.decision == "promote", report(verdict, "t")
    assert [c.passed for c in verdict.checks] == [True, True, True, True]


def test_5xx_abort_the_canary():
    verdict = judge(Pod().serve(400, errors=20), Pod().serve(800))
    assert verdict.decision == "abort"
    assert verdict.reason == "5xx share: canary 5.00% (20 of 400) against stable 0.00% (0 of 800)"


def test_a_significant_but_small_error_increase_is_tolerated():
    # 0.5% against 0%: significant over 4,000 requests, under the 1-point limit.
    verdict = judge(Pod().serve(4000, errors=20), Pod().serve(8000))
    assert verdict.checks[0].detail.startswith("Fisher p=")
    assert float(verdict.checks[0].detail.split("=")[1].split(";")[0]) < 0.01
    assert verdict.decision == "promote"


def test_a_slower_canary_is_aborted():
    verdict = judge(Pod().serve(400, seconds=0.02), Pod().serve(800, seconds=0.001))
    assert verdict.decision == "abort"
    assert verdict.reason == "latency p95: canary 33.33 ms against stable 2.35 ms"
    # faster is no reason to abort
    assert judge(Pod().serve(400, seconds=0.001),
                 Pod().serve(800, seconds=0.02)).decision == "promote"


def test_twice_as_slow_but_within_5_ms_is_tolerated():
    assert judge(Pod().serve(400, seconds=0.002),
                 Pod().serve(800, seconds=0.001)).decision == "promote"


def test_different_predictions_abort_the_canary():
    verdict = judge(Pod().serve(400, positive=0.9), Pod().serve(800, positive=0.3))
    assert verdict.decision == "abort"
    assert verdict.reason == ("predicted labels: canary benign 9%, malignant 91% against stable "
                              "benign 71%, malignant 29%; prediction values: canary median "
                              "0.723 against stable median 0.342")


def test_too_few_requests_wait_then_abort_at_the_end_of_the_window():
    canary, stable = Pod().serve(100, errors=50), Pod().serve(300)
    # a failing check counts only once both sides have the minimum
    assert judge(canary, stable, looks=3, final=False).decision == "continue"
    verdict = judge(canary, stable, looks=3, final=True)
    assert verdict.decision == "abort"
    assert verdict.reason == ("too few requests to judge: canary 100, stable 300, 200 needed "
                              "on each")


def test_each_look_tests_at_a_share_of_alpha():
    analysis = Analysis(Thresholds(alpha=0.01), looks=10)
    assert analysis.alpha == pytest.approx(0.001)


def test_a_release_without_prediction_metrics_is_judged_on_the_rest():
    verdict = judge(Pod(predictions=False).serve(400), Pod().serve(800))
    assert verdict.decision == "promote"
    assert verdict.checks[-1].passed is None
    assert "the canary pods export no predictions_total" in verdict.checks[-1].detail


def test_the_report_gives_the_decision_the_reason_and_the_figures():
    text = report(judge(Pod().serve(400, errors=20), Pod().serve(800)), "canary of 2.0.0")
    assert text.startswith("### canary of 2.0.0: abort\n\n5xx share: canary 5.00% (20 of 400) "
                           "against stable 0.00% (0 of 800)\n")
    assert "| 5xx share | 5.00% (20 of 400) | 0.00% (0 of 800) | FAIL | Fisher p=" in text
    assert "| latency p95 |" in text and "| predicted labels |" in text
