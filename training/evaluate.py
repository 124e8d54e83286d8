"""Score the exported model with LiteRT on the test split (as the service will run it), and
the evaluate stage: candidate against the gate and, when given, against the champion."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.errors import InputError, in_file
from contract.litert import LiteRTModel
from contract.manifest import MANIFEST_FILE, MODEL_FILE, Manifest
from contract.schema import Schema
from training import champion, gate, report
from training.artifacts import display_path, read_json, read_verified, write_json, write_text
from training.config import TrainConfig
from training.data import load_dataset
from training.metrics import task_metrics
from training.split import assign, recorded_ids

BATCH_ROWS = 1024


@dataclass
class Evaluation:
    metrics: dict
    performance: dict
    outputs: np.ndarray  # the model's [N, K], as the service answers


def evaluate_model(lite: LiteRTModel, size_bytes: int, x: np.ndarray, y: np.ndarray,
                   schema: Schema, threshold: float) -> Evaluation:
    output = lite.predict(x).copy()
    performance = {
        "model_size_bytes": size_bytes,
        "inference_us_1_row": lite.latency_us(x[:1]),
        # The test rows repeated up to a full batch: the same values the model will see.
        "inference_us_1024_rows": lite.latency_us(np.resize(x, (BATCH_ROWS, x.shape[1])),
                                                  repeats=50),
    }
    return Evaluation(task_metrics(schema.task, y, output, threshold, schema.labels), performance,
                      output)


def run(model_dir: Path, champion_ref: str | None, policy_path: Path | None = None,
        data_path: Path | None = None, out=print) -> int:
    """The evaluate stage: 0 when the gate passes, 1 when it fails (InputError for the rest).
    Writes evaluation.json and report.md either way."""
    manifest = Manifest.load(model_dir)
    task = manifest.schema.task
    policy_path = policy_path or gate.default_policy(task)
    policy = gate.load_policy(policy_path, task)
    results = read_json(model_dir / "metrics.json")
    content = read_verified(model_dir / MODEL_FILE, manifest.model_sha256)
    schema = manifest.schema
    trained_on = manifest.raw["data"]
    data = load_dataset(data_path or Path(trained_on["path"]), schema)
    if data.sha256 != trained_on["sha256"]:
        raise InputError(f"{data.path}: not the data this model was trained on (sha256 "
                         f"{data.sha256[:12]}..., the manifest says "
                         f"{trained_on['sha256'][:12]}...); train again")
    config = TrainConfig.from_dict(results["config"])
    split = assign(data.ids, data.y, config.seed, config.validation_fraction,
                   config.test_fraction)
    x, y = data.x[split.test], data.y[split.test]
    threshold = manifest.threshold
    candidate = evaluate_model(LiteRTModel(content), len(content), x, y, schema, threshold)

    verdict = {"policy": display_path(policy_path), "task": task,
               "primary_metric": policy.primary_metric,
               "metrics": candidate.metrics, "performance": candidate.performance,
               "champion": None}
    comparison = None
    if champion_ref and champion.absent(champion_ref):
        out(f"champion {champion_ref}: its registry has no such image (manifest unknown); "
            "the gate checks the thresholds only")
        champion_ref = None
    if champion_ref:
        with champion.resolve(champion_ref) as directory:
            learnt_from, lite = _champion(directory, schema)
            # Only rows the champion never learnt from: on the others it would look better.
            fresh = (np.ones(len(y), dtype=bool) if learnt_from is None
                     else ~np.isin(data.ids[split.test], learnt_from))
            if fresh.sum() < 2:
                raise InputError(f"champion {champion_ref}: it trained on {np.sum(~fresh)} of "
                                 f"the {len(y)} test rows, which leaves too few to compare on")
            p = lite.predict(x[fresh]).copy()
        mine, truth = candidate.outputs[fresh], y[fresh]
        comparison = gate.compare(policy, truth, mine, p, threshold)
        verdict["champion"] = {
            "reference": champion_ref,
            "metrics": task_metrics(schema.task, truth, p, threshold, schema.labels),
            "candidate_metrics": task_metrics(schema.task, truth, mine, threshold,
                                              schema.labels),
            "test_rows": len(y),
            "excluded_rows": None if learnt_from is None else int(np.sum(~fresh)),
            "comparison": {**dataclasses.asdict(comparison), "difference": comparison.difference,
                           "best_case": comparison.best_case, "passed": comparison.passed,
                           "rule": gate.rule_in_words(policy),
                           "power_statement": gate.power_statement(comparison)}}
    rules = gate.check(policy, candidate.metrics, candidate.performance, comparison)
    verdict["passed"] = all(rule.passed for rule in rules)
    verdict["rules"] = [dataclasses.asdict(rule) for rule in rules]

    write_json(model_dir / "evaluation.json", verdict)
    write_text(model_dir / "report.md", report.render(manifest.raw, results, verdict))
    out(report.gate_summary(verdict, model_dir))
    return 0 if verdict["passed"] else 1


def _champion(directory: Path, schema: Schema) -> tuple[np.ndarray | None, LiteRTModel]:
    """The ids of the rows the champion learnt from (None when its manifest predates that
    record) and its LiteRT model, refused unless it answers the candidate's question the same
    way: same task, target, labels and features."""
    manifest = Manifest.load(directory)
    with in_file(directory / MANIFEST_FILE):
        champion.check_comparable(manifest.schema, schema)
        trained_on = manifest.raw.get("trained_on")
        learnt_from = None if trained_on is None else recorded_ids(trained_on)
    path = directory / MODEL_FILE
    try:
        model = LiteRTModel(path.read_bytes(), str(path))
    except OSError as e:
        raise InputError(f"{path}: cannot read the champion's model ({e.strerror})") from e
    if (model.n_features, model.n_outputs) != (len(schema.features), len(schema.outputs)):
        raise InputError(f"{path}: the champion takes {model.n_features} features and gives "
                         f"{model.n_outputs} outputs, the candidate {len(schema.features)} and "
                         f"{len(schema.outputs)}")
    return learnt_from, model
