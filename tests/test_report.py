"""report.md (the model card), its plots per task, and the one-screen summaries."""
from __future__ import annotations

import json
import re
import shutil

import pytest

from training import evaluate, report
from training.metrics import metrics_for
from training.plots import FILES, files_for

from conftest import TASKS

PNG = b"\x89PNG\r\n\x1a\n"


def sections(text: str) -> list[str]:
    return re.findall(r"^## (.+)$", text, flags=re.MULTILINE)


def read(directory):
    manifest, results = (json.loads((directory / name).read_text())
                         for name in ("manifest.json", "metrics.json"))
    return manifest, results, (directory / "report.md").read_text()


@pytest.mark.parametrize("task", TASKS)
def test_each_task_gets_its_plots_and_the_report_shows_them(task_model_dirs, task):
    directory = task_model_dirs[task][0]
    manifest, results, text = read(directory)
    expected = files_for(task)
    for name in FILES.values():
        assert (directory / name).exists() == (name in expected.values()), name
    for name in expected.values():
        assert (directory / name).read_bytes().startswith(PNG)
        assert f"]({name})" in text
    assert ("roc_curve" in expected) == (task == "binary")
    assert ("confusion_matrix" in expected) == (task != "regression")
    assert ("residuals" in expected) == ("predicted_vs_actual" in expected) == (
        task == "regression")
    assert sections(text) == ["Data", "Model", "Models compared", "Metrics on the test split",
                              "Size, speed and export", "Limits", "Reproduce"]
    assert f"Task {task}: target `{manifest['schema']['target']}`" in text
    m = results["metrics"]
    names = metrics_for(task)
    assert "| " + " | ".join(names) + " |" in text
    assert "| " + " | ".join(f"{m[k]:.4f}" for k in names) + " |" in text
    assert "`colour` (category) (may be missing)" in text
    if task == "multiclass":
        assert "| label | precision | recall | test rows |" in text
        small = m["per_class"]["small"]
        assert f"| small | {small['precision']:.4f} | {small['recall']:.4f} | " in text
        assert "| actual \\ predicted | small | medium | large |" in text
        assert f"| large | {' | '.join(map(str, m['confusion_matrix'][2]))} |" in text
        assert "the probability of each label in the order small, medium, large" in text
    if task == "regression":
        assert "`price` in its own units" in text and "mean squared error" in text
        assert "of the range" in text and "threshold" not in text
    if task == "binary":
        (tn, fp), (fn, tp) = m["confusion_matrix"]
        assert f"| no | {tn} | {fp} |" in text and f"| yes | {fn} | {tp} |" in text


def test_the_model_card_after_training(model_dir):
    manifest, results, text = read(model_dir)
    assert text.startswith(f"# Model card: {results['candidate']} predicting "
                           f"`{manifest['schema']['target']}`")
    assert "**Gate: not evaluated yet**" in text
    assert f"| model version | {manifest['version']} |" in text
    assert f"`{manifest['data']['path']}` (sha256 `{manifest['data']['sha256']}`), " \
           f"{manifest['data']['rows']} rows" in text
    first, second = results["models"]
    assert f"| metric | {first} (validation) | {first} (test) | {second} (validation) |" in text
    assert f"**{results['candidate']}**" in text
    assert f"max |diff| {results['parity']['max_abs_diff']:.2g}" in text
    assert manifest["git_commit"] in text and "tensorflow 2." in text


def test_the_report_after_a_failed_gate_names_the_rule_and_the_margin(task_model_dirs,
                                                                      tmp_path):
    candidate = shutil.copytree(task_model_dirs["regression"][0], tmp_path / "candidate")
    policy = tmp_path / "gate.toml"
    policy.write_text('primary_metric = "rmse"\n[minimum]\nr2 = 0.999\n')
    assert evaluate.run(candidate, None, policy, out=lambda line: None) == 1
    text = (candidate / "report.md").read_text()
    assert sections(text)[0] == "Gate"
    head = text.split("## Gate")[0]
    assert "**Gate: FAILED.** 1 of 1 rules of" in head
    assert re.search(r"- \*\*minimum r2\*\*: r2 is 0\.\d{4}, below the minimum 0\.999 "
                     r"by 0\.\d{4}: failed", head)
    assert "| minimum r2 | **FAIL** |" in text


@pytest.mark.parametrize("task", TASKS)
def test_the_report_against_a_champion_compares_the_task_metrics(task_model_dirs, tmp_path,
                                                                 task):
    directory = task_model_dirs[task][0]
    candidate = shutil.copytree(directory, tmp_path / "candidate")
    policy = tmp_path / "gate.toml"
    primary = metrics_for(task)[0]
    policy.write_text(f'primary_metric = "{primary}"\n')
    assert evaluate.run(candidate, str(directory), policy, out=lambda line: None) == 0
    text = (candidate / "report.md").read_text()
    assert "**Gate: passed.** All 1 rules of" in text
    assert "### Candidate against champion" in text
    for name in metrics_for(task):
        assert re.search(rf"\| {name} \| -?\d+\.\d{{4}} \| -?\d+\.\d{{4}} \| \+0\.0000 \|", text)
    # The rule in plain words, the rows compared and how often they catch max_regression.
    rows = json.loads((candidate / "metrics.json").read_text())["split"]["test"]
    assert f"Both models scored the {rows} test rows the champion did not train on (0 of the " \
           f"{rows} left out because it did), with LiteRT." in text
    assert f"The candidate fails against the champion only when the test rows show it worse on " \
           f"{primary}" in text
    assert re.search(rf"\*\*On these {rows} rows this gate catches a (drop|rise) of 0\.01 in "
                     rf"{primary} (only )?\d+ times in 100", text)


def test_the_summaries_fit_one_screen(model_dir, tmp_path):
    manifest, results, _ = read(model_dir)
    text = report.summary(manifest, results, model_dir, 12.3)
    lines = text.splitlines()
    assert len(lines) <= 20 and max(map(len, lines)) <= 220
    for name in results["models"]:
        assert f"{name} validation" in text and f"{name} test" in text
    assert lines[-1] == "took:        12.3 s"
    verdict = {"rules": [{"name": "minimum f1", "passed": False, "detail": "f1 is low"}]}
    assert report.gate_summary(verdict, tmp_path).splitlines() == [
        "  FAIL  minimum f1: f1 is low",
        f"gate FAILED: 1 of 1 rules failed; report: {tmp_path / 'report.md'}"]


def test_a_champion_of_another_task_exits_2(task_model_dirs, tmp_path, capsys):
    from training.__main__ import main

    candidate = shutil.copytree(task_model_dirs["multiclass"][0], tmp_path / "candidate")
    champion = task_model_dirs["binary"][0]
    (tmp_path / "gate.toml").write_text('primary_metric = "accuracy"\n')
    assert main(["evaluate", "--model-dir", str(candidate), "--champion", str(champion),
                 "--gate", str(tmp_path / "gate.toml")]) == 2
    err = capsys.readouterr().err
    assert "the champion and the candidate differ in their task: 'binary' against " \
           "'multiclass'; they cannot be compared" in err
