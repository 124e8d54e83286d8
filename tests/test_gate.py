"""The gate: its policy file, its rules, the champion comparison (its error rates simulated,
the rows it leaves out), the model directory it reads, and each outcome end to end
(`python -m training evaluate`: 0 pass, 1 fail, 2 usage or input error)."""
from __future__ import annotations

import csv
import io
import json
import math
import shutil

import gate_simulation
import numpy as np
import pytest

from contract.errors import InputError
from contract.schema import Schema
from training import evaluate, gate, split, train
from training.__main__ import main
from training.config import TrainConfig
from training.data import load_dataset

from conftest import DATA as ACTIVE_DATA
from conftest import ROOT

# The gate is tested on the shipped WDBC example (binary, known numbers), whatever data set is
# active; when that is the example itself, the session's models are its models.
EXAMPLE = ROOT / "examples" / "wdbc"
DATA, SCHEMA = EXAMPLE / "wdbc.csv", EXAMPLE / "schema.json"

ROWS = list(csv.reader(io.StringIO(DATA.read_text())))  # header first

POLICY = gate.load_policy(gate.TASK_POLICIES / "binary.toml")
NO_THRESHOLDS = gate.policy_from_dict({"primary_metric": "roc_auc"})
# Only the champion rule: a candidate that fails here fails nothing else.
CHAMPION_ONLY = """primary_metric = "roc_auc"
[champion]
max_regression = 0.01
"""


def _example_model(request, tmp_path_factory, session_fixture: str, config: TrainConfig):
    if ACTIVE_DATA.read_bytes() == DATA.read_bytes():
        return request.getfixturevalue(session_fixture)
    directory = tmp_path_factory.mktemp(session_fixture)
    train.run(DATA, SCHEMA, directory, config, POLICY, out=lambda line: None)
    return directory


@pytest.fixture(scope="module")
def wdbc_model_dir(request, tmp_path_factory):
    return _example_model(request, tmp_path_factory, "model_dir", TrainConfig())


@pytest.fixture(scope="module")
def wdbc_untrained_dir(request, tmp_path_factory):
    """As conftest's untrained_model_dir: one epoch at a learning rate of ~0."""
    from training.models import LinearSettings
    config = TrainConfig(models=("linear",), max_epochs=1,
                         settings={"linear": LinearSettings(learning_rate=1e-9)})
    return _example_model(request, tmp_path_factory, "untrained_model_dir", config)


@pytest.fixture
def candidate(wdbc_model_dir, tmp_path):
    """A copy of the session's model: evaluate writes its report into the directory."""
    return shutil.copytree(wdbc_model_dir, tmp_path / "candidate")


def policy_file(tmp_path, text: str):
    path = tmp_path / "gate.toml"
    path.write_text(text)
    return path


def verdict_of(directory) -> dict:
    return json.loads((directory / "evaluation.json").read_text())


# The policy file

def test_the_committed_policy_has_every_kind_of_rule():
    assert POLICY.primary_metric == "roc_auc"
    assert POLICY.minimum and POLICY.maximum
    assert set(POLICY.limits) == set(gate.LIMITS)
    assert 0 < POLICY.max_regression < 0.1 and POLICY.confidence == 0.95


def test_the_regression_policy_compares_on_a_metric_without_units():
    # A max_regression in rmse would be in the target's units, whatever they are.
    policy = gate.load_policy(gate.TASK_POLICIES / "regression.toml", "regression")
    assert (policy.primary_metric, policy.max_regression) == ("r2", 0.01)


@pytest.mark.parametrize("text, message", [
    ('primary_metric = "speed"', "primary_metric must be one of accuracy, roc_auc"),
    ('primary_metric = "f1"\nthreshold = 3', "the top level: unknown key.s. threshold"),
    ('primary_metric = "f1"\n[minimum]\nauc = 0.9', r"\[minimum\]: unknown key.s. auc"),
    ('primary_metric = "f1"\n[maximum]\nlog_loss = "low"', "log_loss must be a number"),
    ('primary_metric = "f1"\n[limits]\nmax_ram = 1', "unknown key.s. max_ram"),
    ('primary_metric = "f1"\n[champion]\nconfidence = 95', "at least 0.5 and below 1"),
    ('primary_metric = "f1"\n[champion]\nmax_regression = 0', "max_regression must be a "
     "number > 0 .the drop in f1 the comparison must catch."),
    ('primary_metric = "f1"\n[champion]\npower = 1', "power must be at least 0.5 and below 1"),
    ('primary_metric = "f1"\n[champion]\nseed = 1', "unknown key.s. seed"),
    ('primary_metric = "f1"\nminimum = 3', r"\[minimum\] must be a table"),
    ('primary_metric = "f1"\n[minimum\n', "not valid TOML"),
])
def test_a_broken_policy_is_refused_with_the_file_and_reason(tmp_path, text, message):
    path = policy_file(tmp_path, text)
    with pytest.raises(InputError, match=message) as e:
        gate.load_policy(path)
    assert str(e.value).startswith(str(path))


# The rules

def test_each_rule_says_its_value_its_limit_and_the_margin():
    policy = gate.policy_from_dict({
        "primary_metric": "roc_auc", "minimum": {"recall": 0.9, "roc_auc": 0.95},
        "maximum": {"log_loss": 0.2}, "limits": {"max_model_size_bytes": 1000}})
    rules = gate.check(policy, {"recall": 0.85, "roc_auc": 0.99, "log_loss": 0.3},
                       {"model_size_bytes": 400})
    assert [(r.name, r.passed) for r in rules] == [
        ("minimum recall", False), ("minimum roc_auc", True), ("maximum log_loss", False),
        ("max_model_size_bytes", True)]
    assert rules[0].detail == "recall is 0.8500, below the minimum 0.9 by 0.0500: failed"
    assert rules[1].detail == "roc_auc is 0.9900, the minimum is 0.95: passed with 0.0400 " \
                              "to spare"
    assert rules[2].detail == "log_loss is 0.3000, above the maximum 0.2 by 0.1000: failed"
    assert rules[3].detail == "the model's size is 400 bytes, the maximum is 1,000 bytes: " \
                              "passed with 600 bytes to spare"


def test_an_inference_time_over_its_limit_fails_in_microseconds():
    policy = gate.policy_from_dict({"primary_metric": "f1",
                                    "limits": {"max_inference_us_1_row": 5}})
    (rule,) = gate.check(policy, {}, {"inference_us_1_row": 7.25})
    assert not rule.passed
    assert rule.detail == "LiteRT inference time for 1 row is 7.2 us, above the maximum " \
                          "5 us by 2.2 us: failed"


# The champion comparison

def scores(seed: int, n: int = 120, noise: float = 0.3):
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 3 == 0).astype(int)
    return y, np.clip(y * 0.6 + 0.2 + rng.normal(0, noise, n), 0, 1)


def compare(y, candidate, champion, name="roc_auc", **champion_settings):
    policy = gate.policy_from_dict({"primary_metric": name, "champion": champion_settings})
    return gate.compare(policy, y, candidate, champion)


def test_the_same_model_twice_passes_with_no_spread():
    y, p = scores(0)
    c = compare(y, p, p)
    assert (c.difference, c.standard_error, c.power) == (0, 0, 1)
    (rule,) = gate.check(NO_THRESHOLDS, {}, {}, c)
    assert rule.passed and "the rows do not show the candidate worse" in rule.detail


def test_the_comparison_is_deterministic_and_its_numbers_agree():
    y, good = scores(1, noise=0.2)
    _, worse = scores(2, noise=0.5)
    a = compare(y, good, worse)
    assert a == compare(y, good, worse)
    assert a.difference > 0 and a.standard_error > 0
    assert a.best_case == pytest.approx(a.difference + a.critical_value * a.standard_error)
    # Student's t on 19 degrees of freedom, one-sided 95%.
    assert a.critical_value == pytest.approx(1.7291, abs=1e-4)


@pytest.mark.parametrize("wrong_rows, passed", [(3, True), (6, False)])
def test_a_loss_metric_is_compared_on_the_rows_with_the_df_their_spread_supports(wrong_rows,
                                                                                 passed):
    # Two models alike on 40 rows but for a few the candidate gets wrong: 3 of 3 such rows
    # one way happens 1 time in 8 between equally good models (rows - 1 = 39 degrees of
    # freedom would fail it); 6 of 6, 1 time in 64.
    y = (np.arange(40) % 2).astype(int)
    champion = np.where(y == 1, 0.9, 0.1)
    candidate = champion.copy()
    candidate[:wrong_rows] = 1 - candidate[:wrong_rows]
    c = compare(y, candidate, champion, "accuracy")
    assert c.difference == pytest.approx(-wrong_rows / 40)
    assert c.method == "from the rows' errors (1 for a wrong row), paired"
    assert c.degrees_of_freedom < 39
    assert c.passed == passed
    # On rows - 1 = 39 degrees of freedom both would fail.
    assert c.difference + gate.student_t_quantile(0.95, 39) * c.standard_error < 0


@pytest.mark.parametrize("p, df, exact", [(0.95, 19, 1.729133), (0.95, 4, 2.131847),
                                          (0.975, 9, 2.262157), (0.99, 19, 2.539483)])
def test_the_t_quantile_matches_published_tables(p, df, exact):
    assert gate.student_t_quantile(p, df) == pytest.approx(exact, abs=2e-3)


@pytest.mark.parametrize("name", ["roc_auc", "accuracy", "log_loss"])
def test_a_clearly_worse_candidate_fails_and_a_better_one_passes(name):
    y, good = scores(1, noise=0.2)
    _, bad = scores(2, noise=0.8)
    (rule,) = gate.check(NO_THRESHOLDS, {}, {}, compare(y, bad, good, name))
    assert not rule.passed
    assert "at 95% confidence the candidate is worse than the champion" in rule.detail
    assert rule.detail.endswith(" times in 100.") or "rows would." in rule.detail
    (rule,) = gate.check(NO_THRESHOLDS, {}, {}, compare(y, good, bad, name))
    assert rule.passed


def test_a_drop_the_rows_cannot_show_passes():
    y, p = scores(4)
    slightly_worse = np.clip(p + np.random.default_rng(5).normal(0, 0.15, len(p)), 0, 1)
    c = compare(y, slightly_worse, p)
    assert c.difference < 0 and c.passed
    (rule,) = gate.check(NO_THRESHOLDS, {}, {}, c)
    assert rule.passed and "the rows do not show the candidate worse" in rule.detail


def test_the_power_statement_says_when_the_split_is_too_small():
    y, p = scores(6, n=60, noise=0.4)
    _, other = scores(7, n=60, noise=0.4)
    small = compare(y, other, p, max_regression=0.01)
    assert small.power < 0.8 and small.rows_needed > 60
    assert gate.power_statement(small) == (
        f"On these 60 rows this gate catches a drop of 0.01 in roc_auc only "
        f"{round(small.power * 100)} times in 100: too few rows to catch it 80% of the time; "
        f"about {small.rows_needed:,} rows would.")
    # On the rows needed (the standard error shrinks as 1 / sqrt(rows), the rarest class
    # grows with them) the power is 80%.
    scale = small.rows_needed / 60
    assert gate._power(0.01, small.standard_error / math.sqrt(scale), small.critical_value,
                       20 * scale, 0.0) == pytest.approx(0.8, abs=0.01)
    large = compare(y, other, p, max_regression=0.5)
    assert large.power >= 0.8
    assert gate.power_statement(large) == (
        f"On these 60 rows this gate catches a drop of 0.5 in roc_auc "
        f"{round(large.power * 100)} times in 100.")


def test_for_a_lower_is_better_metric_a_rise_is_the_regression():
    y, good = scores(1, noise=0.2)
    _, bad = scores(2, noise=0.8)
    c = compare(y, bad, good, "log_loss", max_regression=0.05)
    assert c.difference > 0 and not c.passed
    assert "a rise of 0.05 in log_loss" in gate.power_statement(c)


def test_the_rule_in_words_is_the_one_gate_toml_states():
    words = gate.rule_in_words(POLICY)
    assert words.startswith("The candidate fails against the champion only when the test rows "
                            "show it worse on roc_auc")
    assert "An equally good candidate fails at most 5% of the time" in words
    toml = (gate.TASK_POLICIES / "binary.toml").read_text()
    assert "fails only when those rows show\n# it worse than the champion" in toml
    assert "fails at most 5 times in 100, whatever the number of rows" in toml


# Its error rates, measured: a seeded simulation (tests/gate_simulation.py) of many test
# splits for each task. Equally good candidates must fail at most 5% of the time, and the power
# the comparison states must not exceed how often it fails a candidate worse by max_regression
# nor fall far below it, each beyond the simulation's own sampling error (two standard errors).
# The small splits are where a rule goes wrong: a jackknife for every metric, its power from
# the standard error alone, states 19% for ROC AUC on 40 rows where it is 13%, and fails this
# test on roc_auc, log_loss and macro_f1 (its 5.4 to 5.7% of equally good candidates failed
# on RMSE and 40 rows are too close to 5% for a fast test to see).

def _scenario(metric_name: str) -> gate_simulation.Scenario:
    return next(s for s in gate_simulation.SCENARIOS if s.metric == metric_name)


@pytest.mark.slow
@pytest.mark.parametrize("metric_name, rows, repeats", [
    ("roc_auc", 40, 600),
    ("rmse", 40, 6000),  # per-row losses are cheap
    ("log_loss", 60, 3000),
    ("macro_f1", 150, 300),
])
def test_the_simulated_error_rates_are_the_stated_ones(metric_name, rows, repeats):
    r = gate_simulation.run(_scenario(metric_name), rows, repeats, seed=7)
    assert r.false_fails <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / repeats)
    sampling = 2 * math.sqrt(r.power * (1 - r.power) / repeats)
    assert r.power - 0.06 - sampling <= r.stated_power <= r.power + sampling
    assert 0.05 < r.power < 0.95  # a drop the split can catch sometimes, not always


# Each outcome end to end

def test_pass_with_no_champion(candidate, capsys):
    assert main(["evaluate", "--model-dir", str(candidate)]) == 0
    out = capsys.readouterr().out
    assert "gate passed: all 5 rules met" in out
    verdict = verdict_of(candidate)
    assert verdict["passed"] and verdict["champion"] is None
    assert verdict["metrics"] == json.loads((candidate / "metrics.json").read_text())["metrics"]


def test_fail_on_a_minimum(candidate, tmp_path):
    path = policy_file(tmp_path, 'primary_metric = "roc_auc"\n[minimum]\nroc_auc = 0.99999\n'
                                 'accuracy = 0.5\n')
    assert evaluate.run(candidate, None, path, out=lambda line: None) == 1
    rules = verdict_of(candidate)["rules"]
    assert [r["passed"] for r in rules] == [False, True]
    assert "below the minimum 0.99999 by 0.0" in rules[0]["detail"]
    assert rules[0]["detail"].endswith(": failed")


def test_pass_against_a_worse_champion(candidate, wdbc_untrained_dir):
    assert evaluate.run(candidate, str(wdbc_untrained_dir), None,
                        out=lambda line: None) == 0
    champion = verdict_of(candidate)["champion"]
    assert champion["comparison"]["difference"] > 0.3 and champion["comparison"]["passed"]
    assert champion["metrics"]["roc_auc"] < 0.5


def test_fail_against_a_clearly_better_champion(wdbc_untrained_dir, wdbc_model_dir, tmp_path,
                                                capsys):
    weak = shutil.copytree(wdbc_untrained_dir, tmp_path / "weak")
    path = policy_file(tmp_path, CHAMPION_ONLY)
    assert main(["evaluate", "--model-dir", str(weak), "--champion", str(wdbc_model_dir),
                 "--gate", str(path)]) == 1
    (rule,) = verdict_of(weak)["rules"]
    assert rule["name"] == "no regression against the champion (roc_auc)"
    assert not rule["passed"]
    assert "at 95% confidence the candidate is worse than the champion" in rule["detail"]
    assert "FAIL  no regression against the champion" in capsys.readouterr().out


def test_the_committed_policy_fails_an_untrained_model_on_every_quality_rule(
        wdbc_untrained_dir, tmp_path):
    weak = shutil.copytree(wdbc_untrained_dir, tmp_path / "weak")
    assert evaluate.run(weak, None, None, out=lambda line: None) == 1
    failed = {r["name"] for r in verdict_of(weak)["rules"] if not r["passed"]}
    assert failed == {f"minimum {m}" for m in POLICY.minimum} | {"maximum log_loss"}


# Usage and input errors: exit 2, and the message says what to do

def test_a_champion_that_is_no_directory_exits_2(candidate, capsys):
    assert main(["evaluate", "--model-dir", str(candidate), "--champion", "nope:1.0"]) == 2
    assert "champion 'nope:1.0': no such directory" in capsys.readouterr().err


def test_a_champion_directory_without_a_model_exits_2(candidate, tmp_path, capsys):
    assert main(["evaluate", "--model-dir", str(candidate), "--champion", str(tmp_path)]) == 2
    assert "holds no model.tflite" in capsys.readouterr().err


def _without_positive_label(schema):
    del schema["positive_label"]


@pytest.mark.parametrize("change, message", [
    (lambda s: s.update(target="outcome"), "differ in their target: 'outcome' against "
                                           "'diagnosis'"),
    (lambda s: s.update(labels=s["labels"][::-1]), "differ in their labels: 'malignant', "
                                                   "'benign' against 'benign', 'malignant'"),
    (lambda s: s.update(positive_label="benign"),
     "differ in their positive label: 'benign' against 'malignant'"),
    (lambda s: (s.update(task="multiclass", labels=["benign", "malignant", "other"]),
                _without_positive_label(s)),
     "differ in their task: 'multiclass' against 'binary'"),
    (lambda s: s["features"][0].update(name="mean_diameter"),
     "differ in their features: 'mean_diameter', 'mean_texture'"),
    (lambda s: s["features"].pop(), "differ in their features"),
    (lambda s: s["features"][1].update(dtype="int"),
     "the champion's feature 'mean_texture' is of dtype int, the candidate's of dtype float"),
], ids=["target", "labels", "positive label", "task", "feature names", "feature count",
        "feature type"])
def test_a_champion_that_answers_another_question_exits_2(candidate, wdbc_model_dir, tmp_path,
                                                          capsys, change, message):
    rival = shutil.copytree(wdbc_model_dir, tmp_path / "rival")
    manifest = json.loads((rival / "manifest.json").read_text())
    change(manifest["schema"])
    (rival / "manifest.json").write_text(json.dumps(manifest))
    assert main(["evaluate", "--model-dir", str(candidate), "--champion", str(rival)]) == 2
    err = capsys.readouterr().err
    assert f"{rival / 'manifest.json'}: the champion and the candidate " in err or \
        f"{rival / 'manifest.json'}: the champion's feature" in err
    assert message in err


def test_a_champion_without_a_manifest_exits_2(candidate, wdbc_model_dir, tmp_path, capsys):
    rival = shutil.copytree(wdbc_model_dir, tmp_path / "rival")
    (rival / "manifest.json").unlink()
    assert main(["evaluate", "--model-dir", str(candidate), "--champion", str(rival)]) == 2
    assert f"{rival / 'manifest.json'} is missing" in capsys.readouterr().err


# The champion is never scored on rows it learnt from

def small_config(**changes) -> TrainConfig:
    return TrainConfig(models=("linear",), max_epochs=20, **changes)


def train_on(tmp_path, name: str, rows: list, config: TrainConfig):
    data = tmp_path / f"{name}.csv"
    with data.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    directory = tmp_path / name
    train.run(data, SCHEMA, directory, config, POLICY, out=lambda line: None)
    return directory, data


def comparison_rows(candidate_dir, data, champion_dir):
    """The candidate's test rows' ids, and which of them the champion learnt from."""
    config = TrainConfig.from_dict(json.loads((candidate_dir / "metrics.json").read_text())
                                   ["config"])
    dataset = load_dataset(data, Schema.load(SCHEMA))
    test = split.assign(dataset.ids, dataset.y, config.seed, config.validation_fraction,
                        config.test_fraction).test
    learnt = split.recorded_ids(json.loads((champion_dir / "manifest.json").read_text())
                                ["trained_on"])
    return dataset.ids[test], np.isin(dataset.ids[test], learnt)


@pytest.mark.slow
def test_after_the_data_grows_the_champion_is_not_scored_on_its_training_rows(tmp_path):
    champion_dir, _ = train_on(tmp_path, "champion", ROWS[:401], small_config())
    candidate_dir, data = train_on(tmp_path, "candidate", ROWS, small_config())
    policy = policy_file(tmp_path, CHAMPION_ONLY)
    assert evaluate.run(candidate_dir, str(champion_dir), policy, out=lambda line: None) in (0, 1)
    test_ids, learnt = comparison_rows(candidate_dir, data, champion_dir)
    # The new test rows hold none of the champion's training or validation rows ...
    assert not learnt.any()
    champion = verdict_of(candidate_dir)["champion"]
    # ... so every one of them is compared, and the report says none was left out.
    assert champion["excluded_rows"] == 0
    assert champion["comparison"]["rows"] == champion["test_rows"] == len(test_ids)
    assert f"the {len(test_ids)} test rows the champion did not train on (0 of the " in \
        (candidate_dir / "report.md").read_text()


@pytest.mark.slow
def test_rows_the_champion_trained_on_are_left_out_and_counted(tmp_path):
    # A champion whose split differs (another seed): some of its training rows are now test rows.
    champion_dir, _ = train_on(tmp_path, "champion", ROWS, small_config(seed=7))
    candidate_dir, data = train_on(tmp_path, "candidate", ROWS, small_config())
    policy = policy_file(tmp_path, CHAMPION_ONLY)
    assert evaluate.run(candidate_dir, str(champion_dir), policy, out=lambda line: None) in (0, 1)
    test_ids, learnt = comparison_rows(candidate_dir, data, champion_dir)
    offenders = int(learnt.sum())
    assert offenders > 20
    champion = verdict_of(candidate_dir)["champion"]
    assert champion["excluded_rows"] == offenders
    assert champion["comparison"]["rows"] == len(test_ids) - offenders
    assert f"({offenders} of the {len(test_ids)} left out because it did)" in \
        (candidate_dir / "report.md").read_text()


# MODEL_DIR always holds one whole model

def test_retraining_replaces_the_whole_model_directory(wdbc_model_dir, tmp_path):
    directory = shutil.copytree(wdbc_model_dir, tmp_path / "model")
    (directory / "evaluation.json").write_text('{"passed": true}')
    train_on(tmp_path, "model", ROWS, small_config())
    assert not (directory / "evaluation.json").exists()  # no stale verdict survives
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["model"]["architecture"] == "linear"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "model.csv"]


def test_a_failed_training_leaves_the_model_in_place(wdbc_model_dir, tmp_path, capsys):
    directory = shutil.copytree(wdbc_model_dir, tmp_path / "model")
    before = {p.name: p.read_bytes() for p in directory.iterdir()}
    broken = tmp_path / "broken.csv"
    broken.write_text(DATA.read_text().replace("17.99", "x", 1))
    assert main(["train", "--model-dir", str(directory), "--data", str(broken),
                 "--schema", str(SCHEMA), "--quiet"]) == 2
    assert "'x' is not a number" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.csv", "model"]


def test_a_directory_that_holds_no_model_is_not_replaced(tmp_path, capsys):
    directory = tmp_path / "notes"
    directory.mkdir()
    (directory / "todo.txt").write_text("keep me")
    assert main(["train", "--model-dir", str(directory), "--schema", str(SCHEMA),
                 "--data", str(DATA), "--quiet"]) == 2
    assert "holds files but no manifest.json, so it is not a model directory" in \
        capsys.readouterr().err
    assert (directory / "todo.txt").read_text() == "keep me"


def test_a_changed_model_file_exits_2(candidate, capsys):
    with (candidate / "model.tflite").open("ab") as f:
        f.write(b"\0")
    assert main(["evaluate", "--model-dir", str(candidate)]) == 2
    assert "its sha256 differs from the one in manifest.json" in capsys.readouterr().err


def test_data_other_than_the_trained_on_exits_2(candidate, tmp_path, capsys):
    changed = tmp_path / "changed.csv"
    changed.write_text(DATA.read_text().replace("17.99", "17.98", 1))
    assert main(["evaluate", "--model-dir", str(candidate), "--data", str(changed)]) == 2
    assert "not the data this model was trained on" in capsys.readouterr().err


def test_no_model_exits_2(tmp_path, capsys):
    assert main(["evaluate", "--model-dir", str(tmp_path / "none")]) == 2
    assert "manifest.json is missing: train a model into" in \
        capsys.readouterr().err


def test_a_broken_policy_exits_2(candidate, tmp_path, capsys):
    path = policy_file(tmp_path, "primary_metric = 1")
    assert main(["evaluate", "--model-dir", str(candidate), "--gate", str(path)]) == 2
    assert "primary_metric must be one of" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["evaluate"])
    assert e.value.code == 2
    assert "--model-dir" in capsys.readouterr().err
