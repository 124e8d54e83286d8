"""report.md (the model card), its plots, and the one-screen summaries."""
from __future__ import annotations

import json
import re
import shutil

import pytest

from training import evaluate, gate, report
from training.plots import FILES

PNG = b"\x89PNG\r\n\x1a\n"


def sections(text: str) -> list[str]:
    return re.findall(r"^## (.+)$", text, flags=re.MULTILINE)


@pytest.fixture
def trained(model_dir):
    manifest, results = (json.loads((model_dir / name).read_text())
                         for name in ("manifest.json", "metrics.json"))
    return manifest, results, (model_dir / "report.md").read_text()


def test_every_plot_is_a_png_the_report_shows(model_dir, trained):
    text = trained[2]
    for name in FILES.values():
        assert (model_dir / name).read_bytes().startswith(PNG)
        assert f"]({name})" in text


def test_the_model_card_after_training(trained):
    manifest, results, text = trained
    assert text.startswith(f"# Model card: {results['candidate']} predicting `diagnosis`")
    assert "**Gate: not evaluated yet**" in text
    assert sections(text) == ["Data", "Model", "Models compared", "Metrics on the test split",
                              "Size, speed and export", "Limits", "Reproduce"]
    assert f"| model version | {manifest['version']} |" in text
    assert f"`data/wdbc.csv` (sha256 `{manifest['data']['sha256']}`), 569 rows" in text
    m = results["metrics"]
    row = " | ".join(f"{m[k]:.4f}" for k in report.METRICS)
    assert f"| {row} |" in text  # the test metrics, as metrics.json has them
    (tn, fp), (fn, tp) = m["confusion_matrix"]
    assert f"| benign | {tn} | {fp} |" in text and f"| malignant | {fn} | {tp} |" in text
    assert "| metric | mlp (validation) | mlp (test) | logistic_regression (validation) |" in text
    assert f"**{results['candidate']}**" in text
    assert f"{results['parity']['max_abs_diff']:.2g} over the 113 test rows" in text
    assert "one row more or less right moves accuracy by 0.0088" in text
    assert manifest["git_commit"] in text and "tensorflow 2.21.0" in text


def test_the_report_after_a_failed_gate_names_the_rule_and_the_margin(model_dir, tmp_path,
                                                                      untrained_model_dir):
    candidate = shutil.copytree(model_dir, tmp_path / "candidate")
    policy = tmp_path / "gate.toml"
    policy.write_text('primary_metric = "roc_auc"\n[minimum]\nrecall = 0.999\n'
                      '[champion]\nmax_regression = 0.01\n')
    assert evaluate.run(candidate, str(untrained_model_dir), policy, out=lambda line: None) == 1
    text = (candidate / "report.md").read_text()
    assert sections(text)[0] == "Gate"
    head = text.split("## Gate")[0]
    assert "**Gate: FAILED.** 1 of 2 rules of" in head
    assert re.search(r"- \*\*minimum recall\*\*: recall is 0\.\d{4}, below the minimum 0\.999 "
                     r"by 0\.\d{4}: failed", head)
    assert "| minimum recall | **FAIL** |" in text
    assert "| no regression against the champion (roc_auc) | pass |" in text
    assert "### Candidate against champion" in text
    assert f"Champion: `{untrained_model_dir}`" in text
    assert re.search(r"Paired bootstrap of roc_auc \(candidate - champion\): 95% confidence "
                     r"interval \+0\.\d{4} to \+0\.\d{4}\.", text)


def test_the_report_after_a_passed_gate(model_dir, tmp_path):
    candidate = shutil.copytree(model_dir, tmp_path / "candidate")
    assert evaluate.run(candidate, str(model_dir), gate.DEFAULT_POLICY,
                        out=lambda line: None) == 0
    text = (candidate / "report.md").read_text()
    assert "**Gate: passed.** All 10 rules of `training/gate.toml` are met, the comparison " \
           "with the champion included." in text


def test_the_summaries_fit_one_screen(model_dir, trained, tmp_path):
    manifest, results, _ = trained
    text = report.summary(manifest, results, model_dir, 12.3)
    lines = text.splitlines()
    assert len(lines) <= 20 and max(map(len, lines)) <= 200
    assert "logistic_regression validation" in text and "mlp test" in text
    assert lines[-1] == "took:        12.3 s"
    verdict = {"rules": [{"name": "minimum f1", "passed": False, "detail": "f1 is low"}]}
    assert report.gate_summary(verdict, tmp_path).splitlines() == [
        "  FAIL  minimum f1: f1 is low",
        f"gate FAILED: 1 of 1 rules failed; report: {tmp_path / 'report.md'}"]
