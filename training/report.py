"""report.md (the model card) and the summaries printed on the terminal: text from the
manifest, metrics.json and, after `evaluate`, the gate's verdict. Pure string building."""
from __future__ import annotations

from pathlib import Path

from training.metrics import HIGHER_IS_BETTER
from training.plots import FILES

METRICS = tuple(HIGHER_IS_BETTER)  # accuracy, roc_auc, f1, precision, recall, log_loss


def render(manifest: dict, results: dict, verdict: dict | None = None) -> str:
    schema = manifest["schema"]
    model = manifest["model"]
    sections = [
        f"# Model card: {model['architecture']} predicting `{schema['target']}`",
        _verdict_line(verdict),
        _table(["", ""], [
            ["model version", manifest["version"]],
            ["created", manifest["created"]],
            ["git commit", f"`{manifest['git_commit']}`"],
            ["architecture", model["architecture"]],
            [f"{model['primary_metric']} (test split)", f"{model['primary_metric_value']:.4f}"],
        ]),
    ]
    if verdict is not None:
        sections.append(_gate_section(verdict))
    sections += [_data_section(manifest, results), _model_section(manifest, results),
                 _comparison_section(results), _metrics_section(schema, results),
                 _performance_section(results), _limits_section(manifest, results),
                 _reproduce_section(manifest)]
    return "\n\n".join(sections) + "\n"


def summary(manifest: dict, results: dict, model_dir: Path, seconds: float) -> str:
    """The one screen printed at the end of training."""
    name_width = max(len(n) for n in results["models"]) + 12
    lines = ["", "== training summary ==",
             f"{'':<{name_width}}" + "".join(f"{m:>10}" for m in METRICS)]
    for name, scores in results["models"].items():
        for part in ("validation", "test"):
            lines.append(f"{name + ' ' + part:<{name_width}}"
                         + "".join(f"{scores[part][m]:>10.4f}" for m in METRICS))
    performance, parity = results["performance"], results["parity"]
    lines += [
        f"candidate:   {results['candidate']} (better validation {results['primary_metric']}),"
        f" model version {manifest['version']}",
        "test split:  " + ", ".join(f"{m} {results['metrics'][m]:.4f}" for m in METRICS),
        f"LiteRT:      parity max |diff| {parity['max_abs_diff']:.2g} over {parity['rows']} "
        f"test rows (allowed {parity['tolerance']:g}); {_size(performance['model_size_bytes'])};"
        f" {performance['inference_us_1_row']:.1f} us for 1 row, "
        f"{performance['inference_us_1024_rows']:.1f} us for 1024 rows",
        f"written:     {model_dir}/ model.tflite model.keras manifest.json metrics.json "
        f"report.md and {len(FILES)} plots",
        f"took:        {seconds:.1f} s",
    ]
    return "\n".join(lines)


def gate_summary(verdict: dict, model_dir: Path) -> str:
    lines = [f"  {'pass' if rule['passed'] else 'FAIL'}  {rule['name']}: {rule['detail']}"
             for rule in verdict["rules"]]
    failed = [rule for rule in verdict["rules"] if not rule["passed"]]
    outcome = (f"FAILED: {len(failed)} of {len(verdict['rules'])} rules failed" if failed
               else f"passed: all {len(verdict['rules'])} rules met")
    lines.append(f"gate {outcome}; report: {model_dir / 'report.md'}")
    return "\n".join(lines)


def _verdict_line(verdict: dict | None) -> str:
    if verdict is None:
        return "**Gate: not evaluated yet** (`make evaluate` checks it and rewrites this report)."
    failed = [rule for rule in verdict["rules"] if not rule["passed"]]
    if not failed:
        against = ", the comparison with the champion included" if verdict["champion"] else ""
        return (f"**Gate: passed.** All {len(verdict['rules'])} rules of `{verdict['policy']}` "
                f"are met{against}.")
    return "\n".join([f"**Gate: FAILED.** {len(failed)} of {len(verdict['rules'])} rules of "
                      f"`{verdict['policy']}` failed:", ""]
                     + [f"- **{rule['name']}**: {rule['detail']}" for rule in failed])


def _gate_section(verdict: dict) -> str:
    parts = ["## Gate", _table(["rule", "result", "details"], [
        [rule["name"], "pass" if rule["passed"] else "**FAIL**", rule["detail"]]
        for rule in verdict["rules"]])]
    champion = verdict["champion"]
    if champion:
        ours, theirs = verdict["metrics"], champion["metrics"]
        c = champion["comparison"]
        parts += [
            "### Candidate against champion",
            f"Champion: `{champion['reference']}`. Both models scored the same test rows with "
            "LiteRT.",
            _table(["metric", "candidate", "champion", "candidate - champion"], [
                [m, f"{ours[m]:.4f}", f"{theirs[m]:.4f}", f"{ours[m] - theirs[m]:+.4f}"]
                for m in METRICS]),
            f"Paired bootstrap of {c['metric']} (candidate - champion): "
            f"{c['confidence']:.0%} confidence interval {c['low']:+.4f} to {c['high']:+.4f}.",
        ]
    return "\n\n".join(parts)


def _data_section(manifest: dict, results: dict) -> str:
    data, schema, split = manifest["data"], manifest["schema"], results["split"]
    names = ", ".join(f"`{f['name']}`" for f in schema["features"])
    return "\n\n".join([
        "## Data",
        f"`{data['path']}` (sha256 `{data['sha256']}`), {data['rows']} rows. Target "
        f"`{schema['target']}` with labels {', '.join(schema['labels'])}; positive label "
        f"`{schema['positive_label']}`. Split (stratified, seed "
        f"{results['config']['seed']}): {split['train']} train, {split['validation']} "
        f"validation, {split['test']} test rows.",
        f"{len(schema['features'])} features, raw values as in the CSV: {names}. "
        "Their meaning, units, source and license are in the data set's DATA.md.",
        f"![Feature distributions]({FILES['feature_distributions']})",
    ])


def _model_section(manifest: dict, results: dict) -> str:
    config, name = results["config"], results["candidate"]
    trained = results["models"][name]
    return "\n\n".join([
        "## Model",
        f"`{name}`, {trained['parameters']:,} parameters. Input: one float32 tensor [N, "
        f"{len(manifest['schema']['features'])}] of raw feature values (a Normalization layer "
        "adapted on the training split is part of the model); output: float32 [N, 1], the "
        f"probability of `{manifest['schema']['positive_label']}`. Decision threshold "
        f"{manifest['model']['threshold']}.",
        f"Trained with Adam and binary cross-entropy, batch size {config['batch_size']}, at most "
        f"{config['max_epochs']} epochs with early stopping on the validation loss (patience "
        f"{config['patience']}, best weights kept): it ran {trained['epochs']} epochs, the best "
        f"at epoch {trained['best_epoch']}.",
        _table(["setting", "value"], [[k, f"`{v}`"] for k, v in config.items()]),
        f"![Training curves]({FILES['training_curves']})",
    ])


def _comparison_section(results: dict) -> str:
    models = results["models"]
    header = ["metric"] + [f"{n} ({part})" for n in models for part in ("validation", "test")]
    rows = [[m] + [f"{models[n][part][m]:.4f}" for n in models for part in ("validation", "test")]
            for m in METRICS]
    rows.append(["parameters"] + [f"{models[n]['parameters']:,}" for n in models for _ in (1, 2)])
    return "\n\n".join([
        "## Models compared",
        f"Both trained on the same split; the candidate is the one with the better validation "
        f"{results['primary_metric']} (the gate's primary metric): **{results['candidate']}**. "
        "The test split played no part in the choice. Metrics from Keras predictions.",
        _table(header, rows),
    ])


def _metrics_section(schema: dict, results: dict) -> str:
    metrics = results["metrics"]
    (tn, fp), (fn, tp) = metrics["confusion_matrix"]
    negative = next(label for label in schema["labels"] if label != schema["positive_label"])
    positive = schema["positive_label"]
    return "\n\n".join([
        "## Metrics on the test split",
        f"From the exported model.tflite run with LiteRT, as the service runs it; "
        f"{results['split']['test']} rows, threshold {results['threshold']}.",
        _table(list(METRICS), [[f"{metrics[m]:.4f}" for m in METRICS]]),
        _table(["actual \\ predicted", negative, positive],
               [[negative, tn, fp], [positive, fn, tp]]),
        f"![ROC curve]({FILES['roc_curve']}) ![Confusion matrix]({FILES['confusion_matrix']})",
    ])


def _performance_section(results: dict) -> str:
    performance, parity = results["performance"], results["parity"]
    return "\n\n".join([
        "## Size, speed and export",
        _table(["model.tflite", "1 row", "1024 rows"], [[
            _size(performance["model_size_bytes"]),
            f"{performance['inference_us_1_row']:.1f} us",
            f"{performance['inference_us_1024_rows']:.1f} us"]]),
        "Median of repeated LiteRT calls on the machine that trained the model. Keras and "
        f"LiteRT probabilities differ by at most {parity['max_abs_diff']:.2g} over the "
        f"{parity['rows']} test rows (allowed: {parity['tolerance']:g}).",
    ])


def _limits_section(manifest: dict, results: dict) -> str:
    rows = results["split"]["test"]
    return "\n\n".join(["## Limits", "\n".join([
        f"- The test split has {rows} rows: one row more or less right moves accuracy by "
        f"{1 / rows:.4f}. The gate compares with a champion through a bootstrap confidence "
        "interval for this reason.",
        f"- The threshold {manifest['model']['threshold']} weighs false positives and false "
        "negatives alike; where one costs more, choose the threshold for that cost.",
        f"- The model knows only the population behind `{manifest['data']['path']}`; read the "
        "data set's DATA.md for where it comes from and what it leaves out. Values outside "
        "the schema's ranges are refused, not extrapolated.",
        "- Inference times are from the training machine; `make bench` measures the service.",
    ])])


def _reproduce_section(manifest: dict) -> str:
    libraries = ", ".join(f"{k} {v}" for k, v in manifest["libraries"].items())
    return "\n\n".join([
        "## Reproduce",
        f"`git checkout {manifest['git_commit']} && make train evaluate` gives the same "
        f"metrics on the same machine (fixed seeds, deterministic ops). Libraries: {libraries}.",
    ])


def _table(header: list, rows: list) -> str:
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _size(size: int) -> str:
    return f"{size / 1024:.1f} KiB ({size:,} bytes)"
