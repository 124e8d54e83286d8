"""The gate: its policy file, its rules, the paired bootstrap, and each outcome end to end
(`python -m training evaluate`: 0 pass, 1 fail, 2 usage or input error)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from training import evaluate, gate
from training.__main__ import main
from contract.errors import InputError

from conftest import DATA

POLICY = gate.load_policy(gate.TASK_POLICIES / "binary.toml")
# Only the champion rule: a candidate that fails here fails nothing else.
CHAMPION_ONLY = """primary_metric = "roc_auc"
[champion]
max_regression = 0.01
bootstrap_samples = 500
seed = 3
"""


@pytest.fixture
def candidate(model_dir, tmp_path):
    """A copy of the session's model: evaluate writes its report into the directory."""
    return shutil.copytree(model_dir, tmp_path / "candidate")


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


@pytest.mark.parametrize("text, message", [
    ('primary_metric = "speed"', "primary_metric must be one of accuracy, roc_auc"),
    ('primary_metric = "f1"\nthreshold = 3', "the top level: unknown key.s. threshold"),
    ('primary_metric = "f1"\n[minimum]\nauc = 0.9', r"\[minimum\]: unknown key.s. auc"),
    ('primary_metric = "f1"\n[maximum]\nlog_loss = "low"', "log_loss must be a number"),
    ('primary_metric = "f1"\n[limits]\nmax_ram = 1', "unknown key.s. max_ram"),
    ('primary_metric = "f1"\n[champion]\nconfidence = 95', "between 0 and 1"),
    ('primary_metric = "f1"\n[champion]\nmax_regression = -1', "max_regression must be"),
    ('primary_metric = "f1"\n[champion]\nbootstrap_samples = 10', "whole number >= 100"),
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


# The paired bootstrap

def scores(seed: int, n: int = 120, noise: float = 0.3):
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 3 == 0).astype(int)
    return y, np.clip(y * 0.6 + 0.2 + rng.normal(0, noise, n), 0, 1)


def test_the_same_model_twice_gives_an_interval_of_zero():
    y, p = scores(0)
    c = gate.paired_bootstrap(y, p, p, "roc_auc", 0.5, POLICY)
    assert (c.difference, c.low, c.high) == (0, 0, 0)
    (rule,) = gate.check(gate.policy_from_dict({"primary_metric": "roc_auc"}), {}, {}, c)
    assert rule.passed and rule.detail.endswith("at least as good as the champion: passed")


def test_the_interval_is_deterministic_and_brackets_the_difference():
    y, good = scores(1, noise=0.2)
    _, worse = scores(2, noise=0.5)
    a = gate.paired_bootstrap(y, good, worse, "roc_auc", 0.5, POLICY)
    b = gate.paired_bootstrap(y, good, worse, "roc_auc", 0.5, POLICY)
    assert a == b
    assert 0 < a.low < a.difference < a.high


@pytest.mark.parametrize("name", ["roc_auc", "accuracy", "log_loss"])
def test_a_clearly_worse_candidate_fails_and_a_better_one_passes(name):
    y, good = scores(1, noise=0.2)
    _, bad = scores(2, noise=0.8)
    policy = gate.policy_from_dict({"primary_metric": name})
    worse = gate.paired_bootstrap(y, bad, good, name, 0.5, POLICY)
    (rule,) = gate.check(policy, {}, {}, worse)
    assert not rule.passed
    assert "worse than the champion, more than the allowed regression of 0.0000 by" in \
        rule.detail
    (rule,) = gate.check(policy, {}, {}, gate.paired_bootstrap(y, good, bad, name, 0.5, POLICY))
    assert rule.passed


def test_a_small_regression_inside_the_allowance_passes():
    y, p = scores(4)
    slightly_worse = np.clip(p + np.random.default_rng(5).normal(0, 0.03, len(p)), 0, 1)
    c = gate.paired_bootstrap(y, slightly_worse, p, "roc_auc", 0.5, POLICY)
    assert c.low < 0  # the candidate may be worse ...
    policy = gate.policy_from_dict({"primary_metric": "roc_auc",
                                    "champion": {"max_regression": 0.05}})
    (rule,) = gate.check(policy, {}, {}, c)
    assert rule.passed and "within the allowed regression of 0.0500: passed" in rule.detail


# Each outcome end to end

def test_pass_with_no_champion(candidate, capsys):
    assert main(["evaluate", "--model-dir", str(candidate)]) == 0
    out = capsys.readouterr().out
    assert "gate passed: all 9 rules met" in out
    verdict = verdict_of(candidate)
    assert verdict["passed"] and verdict["champion"] is None
    assert verdict["metrics"] == json.loads((candidate / "metrics.json").read_text())["metrics"]


def test_fail_on_a_minimum(candidate, tmp_path):
    path = policy_file(tmp_path, 'primary_metric = "roc_auc"\n[minimum]\nroc_auc = 0.99999\n'
                                 'accuracy = 0.5\n')
    assert evaluate.run(candidate, None, path, out=lambda line: None) == 1
    rules = verdict_of(candidate)["rules"]
    assert [r["passed"] for r in rules] == [False, True]
    assert "below the minimum 0.99999 by 0.000" in rules[0]["detail"]
    assert rules[0]["detail"].endswith(": failed")


def test_pass_against_a_worse_champion(candidate, untrained_model_dir):
    assert evaluate.run(candidate, str(untrained_model_dir), None,
                        out=lambda line: None) == 0
    champion = verdict_of(candidate)["champion"]
    assert champion["comparison"]["difference"] > 0.3 and champion["comparison"]["low"] > 0
    assert champion["metrics"]["roc_auc"] < 0.5


def test_fail_against_a_clearly_better_champion(untrained_model_dir, model_dir, tmp_path,
                                                capsys):
    weak = shutil.copytree(untrained_model_dir, tmp_path / "weak")
    path = policy_file(tmp_path, CHAMPION_ONLY)
    assert main(["evaluate", "--model-dir", str(weak), "--champion", str(model_dir),
                 "--gate", str(path)]) == 1
    (rule,) = verdict_of(weak)["rules"]
    assert rule["name"] == "no regression against the champion (roc_auc)"
    assert not rule["passed"]
    assert "worse than the champion, more than the allowed regression of 0.0100 by" in \
        rule["detail"]
    assert "FAIL  no regression against the champion" in capsys.readouterr().out


def test_the_committed_policy_fails_an_untrained_model_on_every_quality_rule(
        untrained_model_dir, tmp_path):
    weak = shutil.copytree(untrained_model_dir, tmp_path / "weak")
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


def test_a_champion_with_other_features_exits_2(candidate, model_dir, tmp_path, capsys):
    rival = shutil.copytree(model_dir, tmp_path / "rival")
    manifest = json.loads((rival / "manifest.json").read_text())
    manifest["schema"]["features"][0]["name"] = "mean_diameter"
    (rival / "manifest.json").write_text(json.dumps(manifest))
    assert main(["evaluate", "--model-dir", str(candidate), "--champion", str(rival)]) == 2
    assert "the champion takes other features than the candidate" in capsys.readouterr().err


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
