"""The champion comparison's error rates, measured by simulation: how often it fails a candidate
as good as the champion (at most 1 - confidence, whatever the number of rows), and how often
it fails one worse by max_regression, against the power it states for the rows at hand.

Each scenario draws a test split of `rows` rows again and again, with the truth and two
models' outputs, their errors correlated as a retrained model's are with its predecessor's,
and runs training.gate.compare on it. tests/test_gate.py runs it small and seeded;
`python tests/gate_simulation.py` runs it large and prints the table in README.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Callable

import numpy as np

from training import gate
from training.metrics import HIGHER_IS_BETTER, metric

# Rows drawn once per scenario to measure the true difference between the two models.
POPULATION_ROWS = 2_000_000
Draw = Callable[[np.random.Generator, int, bool], tuple]  # (rng, rows, worse) -> y, cand, champ


def correlated_noise(rng: np.random.Generator, shape, correlation: float):
    """Two standard normal arrays with the given correlation: the two models' errors."""
    a = rng.normal(size=shape)
    return a, correlation * a + math.sqrt(1 - correlation ** 2) * rng.normal(size=shape)


def binary(rng: np.random.Generator, rows: int, worse: bool):
    """Binormal scores, ROC AUC 0.85 (0.83 for the worse candidate), 37% positives (as in the
    WDBC data), the two models' scores correlated 0.97."""
    y = (rng.random(rows) < 0.37).astype(np.int64)
    shift = math.sqrt(2) * NormalDist().inv_cdf(0.85)
    shift_candidate = math.sqrt(2) * NormalDist().inv_cdf(0.83) if worse else shift
    champion_noise, candidate_noise = correlated_noise(rng, rows, 0.955)
    return (y, 1 / (1 + np.exp(-(shift_candidate * y + candidate_noise))),
            1 / (1 + np.exp(-(shift * y + champion_noise))))


def regression(rng: np.random.Generator, rows: int, worse: bool):
    """A target with unit spread, predictions off by errors of spread 0.5 (0.53 for the
    worse candidate), the two models' errors correlated 0.9."""
    y = rng.normal(size=rows)
    champion_noise, candidate_noise = correlated_noise(rng, rows, 0.9)
    return y, y + (0.53 if worse else 0.5) * candidate_noise, y + 0.5 * champion_noise


def multiclass(rng: np.random.Generator, rows: int, worse: bool):
    """Three balanced classes, each model's probabilities the softmax of scores: the true
    class's indicator times 1.6 (1.45 for the worse candidate) plus noise correlated 0.9
    between the models."""
    y = rng.integers(0, 3, rows)
    onehot = np.eye(3)[y]
    champion_noise, candidate_noise = correlated_noise(rng, (rows, 3), 0.9)
    return (y, softmax((1.45 if worse else 1.6) * onehot + candidate_noise),
            softmax(1.6 * onehot + champion_noise))


def softmax(scores: np.ndarray) -> np.ndarray:
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Scenario:
    name: str
    draw: Draw
    metric: str  # as training/metrics.py computes it, which the gate uses

    @property
    def higher_is_better(self) -> bool:
        return HIGHER_IS_BETTER[self.metric]

    def score(self, y: np.ndarray, output: np.ndarray) -> float:
        return metric(self.metric, y, output)


# Each task's default primary metric (training/gates/) and the metrics the gate compares
# differently: roc_auc and macro_f1 by jackknife, the others by their per-row losses.
SCENARIOS = (Scenario("binary", binary, "roc_auc"), Scenario("regression", regression, "r2"),
             Scenario("regression", regression, "rmse"),
             Scenario("multiclass", multiclass, "log_loss"),
             Scenario("multiclass", multiclass, "macro_f1"))


@dataclass(frozen=True)
class Result:
    scenario: str
    rows: int
    repeats: int
    drop: float          # the worse candidate's true regression, measured on POPULATION_ROWS
    false_fails: float   # share of equally good candidates failed
    power: float         # share of worse candidates failed
    stated_power: float  # mean of the power the comparison stated for those candidates


def true_drop(scenario: Scenario, seed: int) -> float:
    """How much worse the worse candidate is than the champion, on a very large sample."""
    y, candidate, champion = scenario.draw(np.random.default_rng(seed), POPULATION_ROWS, True)
    difference = scenario.score(y, candidate) - scenario.score(y, champion)
    return -difference if scenario.higher_is_better else difference


def run(scenario: Scenario, rows: int, repeats: int, seed: int) -> Result:
    drop = true_drop(scenario, seed)
    # The policy of a team that must catch exactly this drop: the rule itself takes only the
    # confidence; max_regression sets what the power is stated for.
    policy = gate.Policy(scenario.metric, {}, {}, {}, max_regression=drop, confidence=0.95,
                         power=0.8)
    rng = np.random.default_rng(seed + 1)
    failed = {False: 0, True: 0}
    stated = []
    for worse in (False, True):
        for _ in range(repeats):
            y, candidate, champion = scenario.draw(rng, rows, worse)
            c = gate.compare(policy, y, candidate, champion)
            failed[worse] += not c.passed
            if worse:
                stated.append(c.power)
    return Result(scenario.name, rows, repeats, drop, failed[False] / repeats,
                  failed[True] / repeats, float(np.mean(stated)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=4000)
    p.add_argument("--rows", type=int, nargs="+", default=[40, 113, 300, 1000])
    p.add_argument("--seed", type=int, default=20260101)
    args = p.parse_args()
    print("| task (metric) | test rows | equally good candidates failed | drop | "
          "worse candidates failed | power stated |")
    print("| --- | --- | --- | --- | --- | --- |")
    for scenario in SCENARIOS:
        for rows in args.rows:
            r = run(scenario, rows, args.repeats, args.seed)
            print(f"| {r.scenario} ({scenario.metric}) | {rows} | {r.false_fails:.1%} | "
                  f"{r.drop:.4f} | {r.power:.1%} | {r.stated_power:.1%} |", flush=True)


if __name__ == "__main__":
    main()
