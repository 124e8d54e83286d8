"""The metric gate: the committed policy (data/gate.toml, else training/gates/<task>.toml)
and its verdict on a candidate.

Pure functions over metrics and probabilities; reading the policy file is the only I/O.
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.errors import InputError, in_file
from training.metrics import HIGHER_IS_BETTER, metric, metrics_for

# The gate of the data set in data/ when it has one, else the default of the schema's task.
DATA_POLICY = Path("data") / "gate.toml"
TASK_POLICIES = Path(__file__).with_name("gates")  # binary.toml, multiclass.toml, regression.toml
LIMITS = {  # policy key -> (performance key, what it is, unit)
    "max_model_size_bytes": ("model_size_bytes", "the model's size", "bytes"),
    "max_inference_us_1_row": ("inference_us_1_row", "LiteRT inference time for 1 row", "us"),
    "max_inference_us_1024_rows": ("inference_us_1024_rows",
                                   "LiteRT inference time for 1024 rows", "us"),
}


@dataclass(frozen=True)
class Policy:
    primary_metric: str
    minimum: dict
    maximum: dict
    limits: dict
    max_regression: float
    confidence: float
    bootstrap_samples: int
    seed: int


@dataclass(frozen=True)
class Rule:
    name: str
    passed: bool
    detail: str  # plain words: the value, the limit and the margin


@dataclass(frozen=True)
class Comparison:
    """Candidate against champion on the primary metric, over the same test rows."""
    metric: str
    candidate: float
    champion: float
    low: float  # confidence interval of candidate - champion
    high: float
    confidence: float

    @property
    def difference(self) -> float:
        return self.candidate - self.champion


def default_policy(task: str) -> Path:
    return DATA_POLICY if DATA_POLICY.is_file() else TASK_POLICIES / f"{task}.toml"


def load_policy(path: str | Path, task: str | None = None) -> Policy:
    """The policy in `path`; with a task, refused when it names a metric the task lacks."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(f"{path}: cannot read the gate policy ({e.strerror})") from e
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{path}: not valid TOML ({e})") from e
    with in_file(path):
        policy = policy_from_dict(data)
        if task is not None:
            named = {policy.primary_metric, *policy.minimum, *policy.maximum}
            lacking = sorted(named - set(metrics_for(task)))
            if lacking:
                raise InputError(f"names {', '.join(lacking)}, not a metric of the {task} task; "
                                 f"its metrics are {', '.join(metrics_for(task))}")
        return policy


def policy_from_dict(data: dict) -> Policy:
    _only(data, {"primary_metric", "minimum", "maximum", "limits", "champion"}, "the top level")
    primary = data.get("primary_metric")
    if primary not in HIGHER_IS_BETTER:
        raise InputError(f"primary_metric must be one of {', '.join(HIGHER_IS_BETTER)}, "
                         f"not {primary!r}")
    bounds = {}
    for table in ("minimum", "maximum"):
        bounds[table] = _numbers(data.get(table, {}), f"[{table}]", set(HIGHER_IS_BETTER))
    limits = _numbers(data.get("limits", {}), "[limits]", set(LIMITS))
    champion = data.get("champion", {})
    _only(champion, {"max_regression", "confidence", "bootstrap_samples", "seed"}, "[champion]")
    settings = {**{"max_regression": 0.0, "confidence": 0.95, "bootstrap_samples": 2000,
                   "seed": 0}, **champion}
    if not (_is_number(settings["max_regression"]) and settings["max_regression"] >= 0):
        raise InputError("[champion] max_regression must be a number >= 0")
    if not (_is_number(settings["confidence"]) and 0 < settings["confidence"] < 1):
        raise InputError("[champion] confidence must be between 0 and 1, e.g. 0.95")
    for key in ("bootstrap_samples", "seed"):
        if not isinstance(settings[key], int) or isinstance(settings[key], bool) \
                or settings[key] < (100 if key == "bootstrap_samples" else 0):
            raise InputError(f"[champion] {key} must be a whole number"
                             + (" >= 100" if key == "bootstrap_samples" else " >= 0"))
    return Policy(primary, bounds["minimum"], bounds["maximum"], limits,
                  float(settings["max_regression"]), float(settings["confidence"]),
                  settings["bootstrap_samples"], settings["seed"])


def better(name: str, a: float, b: float) -> bool:
    """Whether metric value `a` is better than `b`."""
    return a > b if HIGHER_IS_BETTER[name] else a < b


def paired_bootstrap(y: np.ndarray, candidate: np.ndarray, champion: np.ndarray, name: str,
                     threshold: float, policy: Policy) -> Comparison:
    """Confidence interval of metric(candidate) - metric(champion) over resamples of the test
    rows, both models scored on the same resample. Rows are resampled within each class, so
    every resample has both classes and ROC AUC is always defined."""
    rng = np.random.default_rng(policy.seed)
    classes = ([np.arange(len(y))] if y.dtype.kind == "f"  # regression: no classes
               else [np.flatnonzero(y == label) for label in np.unique(y)])
    differences = np.empty(policy.bootstrap_samples)
    for i in range(policy.bootstrap_samples):
        rows = np.concatenate([rng.choice(c, size=len(c), replace=True) for c in classes])
        differences[i] = (metric(name, y[rows], candidate[rows], threshold)
                          - metric(name, y[rows], champion[rows], threshold))
    tail = (1 - policy.confidence) / 2 * 100
    low, high = np.percentile(differences, [tail, 100 - tail])
    return Comparison(name, metric(name, y, candidate, threshold),
                      metric(name, y, champion, threshold), float(low), float(high),
                      policy.confidence)


def check(policy: Policy, metrics: dict, performance: dict,
          comparison: Comparison | None = None) -> list[Rule]:
    """Every rule of the policy, in the order of the file, each passed or failed."""
    rules = []
    for name, limit in policy.minimum.items():
        value = metrics[name]
        rules.append(Rule(f"minimum {name}", value >= limit, _against(
            name, value, limit, "the minimum", value - limit, "below")))
    for name, limit in policy.maximum.items():
        value = metrics[name]
        rules.append(Rule(f"maximum {name}", value <= limit, _against(
            name, value, limit, "the maximum", limit - value, "above")))
    for key, limit in policy.limits.items():
        measured, what, unit = LIMITS[key]
        value = performance[measured]
        rules.append(Rule(key, value <= limit, _against(
            what, value, limit, "the maximum", limit - value, "above", unit)))
    if comparison is not None:
        rules.append(_champion_rule(policy, comparison))
    return rules


def _champion_rule(policy: Policy, c: Comparison) -> Rule:
    name, allowed = c.metric, policy.max_regression
    interval = (f"{name} {c.candidate:.4f} against the champion's {c.champion:.4f}: "
                f"candidate - champion = {c.difference:+.4f}, {c.confidence:.0%} confidence "
                f"interval {c.low:+.4f} to {c.high:+.4f}")
    # How much worse the candidate may plausibly be: the interval's end on the bad side.
    worst = -c.low if HIGHER_IS_BETTER[name] else c.high
    if worst <= 0:
        verdict = "the candidate is at least as good as the champion: passed"
    elif worst <= allowed:
        verdict = (f"the candidate may be up to {worst:.4f} worse than the champion, within the "
                   f"allowed regression of {allowed:.4f}: passed")
    else:
        verdict = (f"the candidate may be up to {worst:.4f} worse than the champion, more than "
                   f"the allowed regression of {allowed:.4f} by {worst - allowed:.4f}: failed")
    return Rule(f"no regression against the champion ({name})", worst <= allowed,
                f"{interval}; {verdict}")


def _against(what: str, value: float, limit: float, bound: str, margin: float, side: str,
             unit: str = "") -> str:
    def show(v: float) -> str:
        return f"{v:,.0f} {unit}" if unit == "bytes" else f"{v:,.1f} {unit}" if unit else f"{v:.4f}"
    # The limit as the policy file writes it: 0.99999 must not read as 1.0000.
    written = f"{limit:,g} {unit}".rstrip()
    if margin >= 0:
        return f"{what} is {show(value)}, {bound} is {written}: passed with {show(margin)} to spare"
    return f"{what} is {show(value)}, {side} {bound} {written} by {show(-margin)}: failed"


def _numbers(table: dict, where: str, allowed: set) -> dict:
    if not isinstance(table, dict):
        raise InputError(f"{where} must be a table")
    _only(table, allowed, where)
    for key, value in table.items():
        if not _is_number(value):
            raise InputError(f"{where} {key} must be a number, not {value!r}")
    return {key: float(value) for key, value in table.items()}


def _only(table: dict, allowed: set, where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)} "
                         f"(known: {', '.join(sorted(allowed))})")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
