"""The metric gate: the committed policy (data/gate.toml, else training/gates/<task>.toml)
and its verdict on a candidate.

Pure functions over metrics and probabilities; reading the policy file is the only I/O.
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np

from contract.errors import InputError, in_file
from training.metrics import HIGHER_IS_BETTER, metric, metrics_for, row_losses

# Groups of the jackknife (see `compare`): a comparison costs 2 * GROUPS evaluations of the
# metric, and Student's t on 19 degrees of freedom needs about 7% more rows for the same power
# than a known standard error would.
GROUPS = 20

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
    max_regression: float  # the drop in the primary metric the champion comparison must catch
    confidence: float      # one-sided: an equally good candidate fails 1 - confidence of the time
    power: float           # a split that catches max_regression less often than this is too small


@dataclass(frozen=True)
class Rule:
    name: str
    passed: bool
    detail: str  # plain words: the value, the limit and the margin


@dataclass(frozen=True)
class Comparison:
    """Candidate against champion on one metric, over the same rows (see `compare`)."""
    metric: str
    higher_is_better: bool
    rows: int
    candidate: float
    champion: float
    standard_error: float  # of candidate - champion; nan when it cannot be estimated
    critical_value: float  # Student's t quantile at `confidence`
    degrees_of_freedom: float
    method: str            # how the standard error was estimated, in words
    confidence: float
    max_regression: float
    power: float           # the chance that a candidate worse by max_regression fails here
    power_target: float
    rows_needed: int | None  # rows for power_target (None when it cannot be estimated)

    @property
    def difference(self) -> float:
        return self.candidate - self.champion

    @property
    def best_case(self) -> float:
        """How much better than the champion the candidate may be, at `confidence` (one-sided):
        below zero, the rows show it worse."""
        gain = self.difference if self.higher_is_better else -self.difference
        return gain + self.critical_value * self.standard_error

    @property
    def passed(self) -> bool:
        # An unknown standard error (a class with one row) shows nothing: the candidate passes.
        return not self.best_case < 0


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
    _only(champion, {"max_regression", "confidence", "power"}, "[champion]")
    settings = {"max_regression": 0.01, "confidence": 0.95, "power": 0.8, **champion}
    if not (_is_number(settings["max_regression"]) and settings["max_regression"] > 0):
        raise InputError("[champion] max_regression must be a number > 0 (the drop in "
                         f"{primary} the comparison must catch)")
    for key, example in (("confidence", 0.95), ("power", 0.8)):
        if not (_is_number(settings[key]) and 0.5 <= settings[key] < 1):
            raise InputError(f"[champion] {key} must be at least 0.5 and below 1, "
                             f"e.g. {example}")
    return Policy(primary, bounds["minimum"], bounds["maximum"], limits,
                  float(settings["max_regression"]), float(settings["confidence"]),
                  float(settings["power"]))


def better(name: str, a: float, b: float) -> bool:
    """Whether metric value `a` is better than `b`."""
    return a > b if HIGHER_IS_BETTER[name] else a < b


def compare(policy: Policy, truth: np.ndarray, candidate: np.ndarray, champion: np.ndarray,
            threshold: float = 0.5) -> Comparison:
    """The two models' outputs on the same rows (first axis), scored on the policy's primary
    metric: its value for each, the standard error of their difference, and the power.

    A metric that moves with the mean of a per-row loss alone (accuracy, log_loss, mae, rmse,
    r2: `row_losses`) is compared on the rows' loss differences, a paired t-test on the degrees
    of freedom their spread supports (rows - 1 at most, fewer for heavy tails: `_effective_df`):
    the sign of the metric's difference is that of the mean loss difference, and its standard
    error is converted exactly (rmse - rmse' = (mse - mse') / (rmse + rmse')). The other
    metrics (roc_auc, f1, precision, recall, macro_f1) are no such mean: their standard error
    is a delete-a-group jackknife, the difference recomputed with each of GROUPS groups of rows
    left out, on GROUPS - 1 degrees of freedom. It needs nothing of the metric but the
    function, and never underestimates a variance on average (Efron and Stein, 1981). Either
    way the difference is compared with Student's t.
    """
    name = policy.primary_metric
    higher_is_better = HIGHER_IS_BETTER[name]
    rows = len(truth)
    values = (metric(name, truth, candidate, threshold), metric(name, truth, champion, threshold))
    losses = row_losses(name, truth, candidate, threshold)
    if losses is not None:
        gap = losses - row_losses(name, truth, champion, threshold)
        se = float(np.std(gap, ddof=1) / math.sqrt(rows)) * _per_mean_loss(name, truth, values)
        spread_df = _effective_df(gap)
        df, rarest = min(rows - 1, spread_df), None
        method = f"from the rows' {LOSS_NAMES[name]}, paired"
    else:
        groups = min(GROUPS, rows)
        group = _groups(truth, groups)
        left_out = np.array([
            metric(name, truth[keep], candidate[keep], threshold)
            - metric(name, truth[keep], champion[keep], threshold)
            for keep in (group != g for g in range(groups))])
        se = float(np.sqrt((groups - 1) / groups * np.sum((left_out - left_out.mean()) ** 2)))
        counts = np.bincount(truth.astype(np.int64))
        df, rarest, spread_df = groups - 1, int(counts[counts > 0].min()), None
        method = f"from a jackknife over {groups} groups of rows"
    t = student_t_quantile(policy.confidence, df)
    power = _power(policy.max_regression, se, t, rarest, spread_df)
    needed = _rows_needed(policy, rows, se, t, rarest, spread_df)
    return Comparison(name, higher_is_better, rows, float(values[0]), float(values[1]), se, t,
                      df, method, policy.confidence, policy.max_regression, power,
                      policy.power, needed)


# What each loss-based metric's rows are compared on, in words.
LOSS_NAMES = {"accuracy": "errors (1 for a wrong row)", "log_loss": "log losses",
              "mae": "absolute errors", "rmse": "squared errors", "r2": "squared errors"}
# The power of a jackknife comparison: the standard error of roc_auc, f1, precision, recall
# and macro_f1 grows with the difference itself (simulated on 40 to 1000 rows: roughly
# se^2 = se0^2 + k * difference^2, k about 2 / the rows of the rarest class), so a worse
# candidate is failed less often than its standard error alone says. The power is stated as
# if the critical value were t / sqrt(1 - t^2 * k): SE_GROWTH = 2 is the constant of k that
# keeps the stated power at or below the simulated one (tests/gate_simulation.py).
SE_GROWTH = 2.0


def _per_mean_loss(name: str, truth: np.ndarray, values: tuple[float, float]) -> float:
    """How far the metric moves per unit of its mean row loss, between the two models."""
    if name == "rmse":
        total = values[0] + values[1]
        return 1 / total if total > 0 else 0.0
    if name == "r2":
        spread = float(np.mean((truth - np.mean(truth)) ** 2))
        return 1 / spread if spread > 0 else math.nan
    return 1.0


def _effective_df(gap: np.ndarray) -> float:
    """The degrees of freedom the rows' spread supports (Satterthwaite): those of a chi-square
    whose relative variance, 2 / df, is that of the variance estimated from these rows,
    (kurtosis - 1) / rows. As many as rows for normal rows, fewer for heavy-tailed ones
    (squared errors, log losses, or a few rows where the models disagree on accuracy)."""
    centred = gap - gap.mean()
    m2 = float(np.mean(centred ** 2))
    kurtosis = float(np.mean(centred ** 4)) / m2 ** 2 if m2 > 0 else 3.0
    return 2 * len(gap) / max(kurtosis - 1, 1e-9)


def _power(drop: float, se: float, t: float, rarest: float | None,
           spread_df: float | None) -> float:
    """The chance that a candidate worse by `drop` fails: its difference about normal around
    -drop with standard error `se`, against the critical value t. Not overstated by the error
    in `se`: for a paired comparison, drop / se is estimated with the relative variance
    1 / (2 spread_df), so it is taken less its bias (3/8 of the relative variance of se^2)
    and the power less the second-order bias of the normal curve over it; for a jackknife
    comparison t is raised instead (see SE_GROWTH)."""
    if not se > 0:
        return 1.0 if se == 0 else math.nan
    if rarest is not None:
        room = 1 - t * t * SE_GROWTH / rarest
        if room <= 0:
            return 0.0  # a class too rare for the rows to show a drop reliably
        return float(NormalDist().cdf(drop / se - t / math.sqrt(room)))
    ratio = drop / se / (1 + 3 / (4 * spread_df))
    x = ratio - t
    normal = NormalDist()
    # Below 50% the normal curve is convex, so a noisy drop / se overstates the power on
    # average: taken off. Above it, the power is not raised.
    bias = max(0.0, -x * normal.pdf(x) / 2 * ratio ** 2 / (2 * spread_df))
    return max(0.0, normal.cdf(x) - bias)


def _rows_needed(policy: Policy, rows: int, se: float, t: float, rarest: int | None,
                 spread_df: float | None) -> int | None:
    """How many rows like these would catch max_regression `policy.power` of the time: the
    standard error shrinks as 1 / sqrt(rows), the rarest class grows with them."""
    if not math.isfinite(se):
        return None

    def caught(scale: float) -> bool:
        return _power(policy.max_regression, se / math.sqrt(scale), t,
                      None if rarest is None else rarest * scale,
                      None if spread_df is None else spread_df * scale) >= policy.power

    high = 1.0
    while not caught(high):
        high *= 2
    low = high / 2 if high > 1 else 0.0
    while high - low > 1 / rows:
        middle = (low + high) / 2
        low, high = (low, middle) if caught(middle) else (middle, high)
    return math.ceil(rows * high)


def student_t_quantile(p: float, df: int) -> float:
    """Student's t quantile: the Cornish-Fisher expansion in 1/df (Abramowitz and Stegun
    26.7.5), within 1e-3 of the exact value from 4 degrees of freedom on, for p up to 0.99.
    Written out because it is the only thing the gate would need scipy for."""
    z = NormalDist().inv_cdf(p)
    terms = ((z ** 3 + z) / 4,
             (5 * z ** 5 + 16 * z ** 3 + 3 * z) / 96,
             (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / 384,
             (79 * z ** 9 + 776 * z ** 7 + 1482 * z ** 5 - 1920 * z ** 3 - 945 * z) / 92160)
    return z + sum(term / df ** (i + 1) for i, term in enumerate(terms))


def _groups(truth: np.ndarray, groups: int) -> np.ndarray:
    """Each row's group: the rows in order of their truth (a class or a value per row) dealt
    out in turn, so every group holds each class (or each range of a regression target) in
    proportion, and leaving a group out leaves every class with rows as long as it has two."""
    order = np.argsort(truth, kind="stable")
    group = np.empty(len(truth), dtype=np.int64)
    group[order] = np.arange(len(truth)) % groups
    return group


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
        rules.append(_champion_rule(comparison))
    return rules


def rule_in_words(policy: Policy) -> str:
    """The champion comparison's rule, as gate.toml states it."""
    name = policy.primary_metric
    worse = _worse(HIGHER_IS_BETTER[name])
    return (f"The candidate fails against the champion only when the test rows show it worse on "
            f"{name}: when even the one-sided {policy.confidence:.0%} bound of how much better "
            f"it may be is below zero. An equally good candidate fails at most "
            f"{1 - policy.confidence:.0%} of the time, whatever the number of rows. "
            f"max_regression ({policy.max_regression:g}) is the {worse} the comparison "
            f"must catch: the report says how often it does on the rows at hand, and how many "
            f"rows it needs to catch it {policy.power:.0%} of the time.")


def power_statement(c: Comparison) -> str:
    """How often this comparison catches a candidate worse by max_regression, in plain words."""
    drop = f"a {_worse(c.higher_is_better)} of {c.max_regression:g} in {c.metric}"
    if not math.isfinite(c.power):
        return (f"On these {c.rows} rows the spread of the difference cannot be estimated (a "
                f"class with a single row), so the gate cannot tell whether it would catch "
                f"{drop}.")
    often = f"{round(c.power * 100)} times in 100"
    if c.power >= c.power_target:
        return f"On these {c.rows} rows this gate catches {drop} {often}."
    return (f"On these {c.rows} rows this gate catches {drop} only {often}: too few rows to "
            f"catch it {c.power_target:.0%} of the time; about {c.rows_needed:,} rows would.")


def _champion_rule(c: Comparison) -> Rule:
    name = c.metric
    numbers = (f"{name} {c.candidate:.4f} against the champion's {c.champion:.4f} on {c.rows} "
               f"rows: candidate - champion = {c.difference:+.4f} (standard error "
               f"{c.standard_error:.4f}, {c.method}; Student's t on "
               f"{round(c.degrees_of_freedom, 1):g} degrees of freedom)")
    better_by = c.best_case
    if not c.passed:
        verdict = (f"at {c.confidence:.0%} confidence the candidate is worse than the champion "
                   f"(it is at best {-better_by:.4f} worse): failed")
    elif math.isnan(better_by):
        verdict = "the rows cannot show the candidate worse: passed"
    else:
        verdict = (f"the rows do not show the candidate worse (at {c.confidence:.0%} confidence "
                   f"it may be up to {better_by:.4f} better): passed")
    return Rule(f"no regression against the champion ({name})", c.passed,
                f"{numbers}; {verdict}. {power_statement(c)}")


def _worse(higher_is_better: bool) -> str:
    return "drop" if higher_is_better else "rise"


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
