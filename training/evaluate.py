"""Score the exported model with LiteRT on the test split (as the service will run it), and
the evaluate stage: candidate against the gate and, when given, against the champion."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.errors import InputError
from contract.litert import LiteRTModel
from contract.manifest import MANIFEST_FILE, MODEL_FILE, Manifest
from contract.schema import Schema
from training import champion, gate, report
from training.artifacts import display_path, read_json, read_verified, write_json
from training.config import TrainConfig
from training.data import load_dataset
from training.metrics import task_metrics
from training.split import stratified_split

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
    split = stratified_split(data.strata, config.seed, config.validation_fraction,
                             config.test_fraction)
    x, y = data.x[split.test], data.y[split.test]
    threshold = manifest.threshold
    candidate = evaluate_model(LiteRTModel(content), len(content), x, y, schema, threshold)

    verdict = {"policy": display_path(policy_path), "task": task,
               "primary_metric": policy.primary_metric,
               "metrics": candidate.metrics, "performance": candidate.performance,
               "champion": None}
    comparison = None
    if champion_ref:
        with champion.resolve(champion_ref) as directory:
            p = _champion_model(directory, schema).predict(x).copy()
        comparison = gate.paired_bootstrap(y, candidate.outputs, p, policy.primary_metric,
                                           threshold, policy)
        verdict["champion"] = {"reference": champion_ref,
                               "metrics": task_metrics(schema.task, y, p, threshold,
                                                       schema.labels),
                               "comparison": {**dataclasses.asdict(comparison),
                                              "difference": comparison.difference}}
    rules = gate.check(policy, candidate.metrics, candidate.performance, comparison)
    verdict["passed"] = all(rule.passed for rule in rules)
    verdict["rules"] = [dataclasses.asdict(rule) for rule in rules]

    write_json(model_dir / "evaluation.json", verdict)
    (model_dir / "report.md").write_text(report.render(manifest.raw, results, verdict))
    out(report.gate_summary(verdict, model_dir))
    return 0 if verdict["passed"] else 1


def _champion_model(directory: Path, schema: Schema) -> LiteRTModel:
    """The champion's LiteRT model, refused when it does not take this schema's features."""
    path = directory / MODEL_FILE
    manifest_path = directory / MANIFEST_FILE
    if manifest_path.is_file():
        theirs = Manifest.load(directory).schema
        if theirs.feature_names != schema.feature_names:
            raise InputError(f"{manifest_path}: the champion takes other features than the "
                             "candidate; the two cannot be compared on the same rows")
        if (theirs.task, theirs.outputs) != (schema.task, schema.outputs):
            raise InputError(f"{manifest_path}: the champion answers {theirs.task} "
                             f"({', '.join(theirs.outputs)}), the candidate {schema.task} "
                             f"({', '.join(schema.outputs)}); the two cannot be compared")
    try:
        model = LiteRTModel(path.read_bytes(), str(path))
    except OSError as e:
        raise InputError(f"{path}: cannot read the champion's model ({e.strerror})") from e
    if model.n_features != len(schema.features):
        raise InputError(f"{path}: the champion takes {model.n_features} features, the "
                         f"candidate {len(schema.features)}")
    if model.n_outputs != len(schema.outputs):
        raise InputError(f"{path}: the champion gives {model.n_outputs} outputs, the "
                         f"candidate {len(schema.outputs)}")
    return model
