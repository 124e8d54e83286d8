"""report.md (the model card) and the summaries printed on the terminal: text from the
manifest, metrics.json and, after `evaluate`, the gate's verdict. Pure string building."""
from __future__ import annotations

from pathlib import Path

from training.metrics import metrics_for
from training.plots import FILES, LOSS_NAMES, files_for


def task_of(results: dict) -> str:
    return results.get("task", "binary")  # metrics.json from before tasks: binary


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
    metrics = metrics_for(task_of(results))
    name_width = max(len(n) for n in results["models"]) + 12
    lines = ["", "== training summary ==",
             f"{'':<{name_width}}" + "".join(f"{m:>10}" for m in metrics)]
    for name, scores in results["models"].items():
        for part in ("validation", "test"):
            lines.append(f"{name + ' ' + part:<{name_width}}"
                         + "".join(f"{scores[part][m]:>10.4f}" for m in metrics))
    performance, parity = results["performance"], results["parity"]
    lines += [
        f"candidate:   {results['candidate']} (better validation {results['primary_metric']}),"
        f" model version {manifest['version']}",
        "test split:  " + ", ".join(f"{m} {results['metrics'][m]:.4f}" for m in metrics),
        f"LiteRT:      parity {_parity(parity)}; {_size(performance['model_size_bytes'])};"
        f" {performance['inference_us_1_row']:.1f} us for 1 row, "
        f"{performance['inference_us_1024_rows']:.1f} us for 1024 rows",
        f"written:     {model_dir}/ model.tflite model.keras manifest.json metrics.json "
        f"report.md and {len(files_for(task_of(results)))} plots",
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
        ours, theirs = champion["candidate_metrics"], champion["metrics"]
        c = champion["comparison"]
        excluded = champion["excluded_rows"]
        rows = (f"{c['rows']} of the {champion['test_rows']} test rows: the champion's manifest "
                "does not record which rows it trained on, so some may be among them"
                if excluded is None else
                f"the {c['rows']} test rows the champion did not train on ({excluded} of the "
                f"{champion['test_rows']} left out because it did)")
        parts += [
            "### Candidate against champion",
            f"Champion: `{champion['reference']}`. Both models scored {rows}, with LiteRT.",
            _table(["metric", "candidate", "champion", "candidate - champion"], [
                [m, f"{ours[m]:.4f}", f"{theirs[m]:.4f}", f"{ours[m] - theirs[m]:+.4f}"]
                for m in metrics_for(verdict.get("task", "binary"))]),
            c["rule"],
            f"**{c['power_statement']}**",
        ]
    return "\n\n".join(parts)


def _data_section(manifest: dict, results: dict) -> str:
    data, schema, split = manifest["data"], manifest["schema"], results["split"]
    task = task_of(results)
    names = ", ".join(f"`{f['name']}`" + (" (category)" if f.get("dtype") == "category" else "")
                      + (" (may be missing)" if f.get("nullable") else "")
                      for f in schema["features"])
    target = {
        "binary": lambda: f"labels {', '.join(schema['labels'])}; positive label "
                          f"`{schema['positive_label']}`",
        "multiclass": lambda: f"labels {', '.join(schema['labels'])}",
        "regression": lambda: "a number (regression)",
    }[task]()
    return "\n\n".join([
        "## Data",
        f"`{data['path']}` (sha256 `{data['sha256']}`), {data['rows']} rows. Task {task}: "
        f"target `{schema['target']}`, {target}. Split (by a hash of each row, seed "
        f"{results['config']['seed']}): {split['train']} train, "
        f"{split['validation']} validation, {split['test']} test rows.",
        f"{len(schema['features'])} features: {names}. Their meaning, units, source and "
        "license are in the data set's DATA.md.",
        f"![Feature distributions]({FILES['feature_distributions']})",
    ])


def _model_section(manifest: dict, results: dict) -> str:
    config, name, task = results["config"], results["candidate"], task_of(results)
    trained = results["models"][name]
    schema = manifest["schema"]
    output = {
        "binary": f"float32 [N, 1], the probability of `{schema.get('positive_label')}` "
                  f"(decision threshold {manifest['model']['threshold']})",
        "multiclass": f"float32 [N, {len(schema.get('labels', []))}], the probability of each "
                      f"label in the order {', '.join(schema.get('labels', []))}",
        "regression": f"float32 [N, 1], `{schema['target']}` in its own units",
    }[task]
    return "\n\n".join([
        "## Model",
        f"`{name}`, {trained['parameters']:,} parameters. Input: one float32 tensor [N, "
        f"{len(schema['features'])}], a column per feature (numbers as they are, a category "
        "as its index in the schema, missing as NaN). Inside the model, from the training "
        "split: missing numbers imputed with the median (plus a was-missing column), "
        "categories one-hot, then standardized. Output: " + output + ".",
        f"Trained with Adam and {LOSS_NAMES[task]}, batch size {config['batch_size']}, at most "
        f"{config['max_epochs']} epochs, keeping the epoch with the best validation "
        f"{results['primary_metric']} (patience {config['patience']}): it ran "
        f"{trained['epochs']} epochs, the best at epoch {trained['best_epoch']}.",
        _table(["setting", "value"], [[k, f"`{v}`"] for k, v in config.items()]),
        f"![Training curves]({FILES['training_curves']})",
    ])


def _comparison_section(results: dict) -> str:
    models = results["models"]
    header = ["metric"] + [f"{n} ({part})" for n in models for part in ("validation", "test")]
    rows = [[m] + [f"{models[n][part][m]:.4f}" for n in models for part in ("validation", "test")]
            for m in metrics_for(task_of(results))]
    rows.append(["parameters"] + [f"{models[n]['parameters']:,}" for n in models for _ in (1, 2)])
    return "\n\n".join([
        "## Models compared",
        f"All trained on the same split; the candidate is the one with the best validation "
        f"{results['primary_metric']} (the gate's primary metric): **{results['candidate']}**. "
        "The test split played no part in the choice. Metrics from Keras predictions.",
        _table(header, rows),
    ])


def _metrics_section(schema: dict, results: dict) -> str:
    metrics, task = results["metrics"], task_of(results)
    names = metrics_for(task)
    parts = ["## Metrics on the test split",
             f"From the exported model.tflite run with LiteRT, as the service runs it; "
             f"{results['split']['test']} rows"
             + (f", threshold {results['threshold']}." if task == "binary" else "."),
             _table(list(names), [[f"{metrics[m]:.4f}" for m in names]])]
    if task == "binary":
        (tn, fp), (fn, tp) = metrics["confusion_matrix"]
        negative = next(label for label in schema["labels"] if label != schema["positive_label"])
        positive = schema["positive_label"]
        parts.append(_table(["actual \\ predicted", negative, positive],
                            [[negative, tn, fp], [positive, fn, tp]]))
    if task == "multiclass":
        parts.append(_table(["label", "precision", "recall", "test rows"], [
            [label, f"{c['precision']:.4f}", f"{c['recall']:.4f}", c["support"]]
            for label, c in metrics["per_class"].items()]))
        parts.append(_table(["actual \\ predicted", *schema["labels"]], [
            [label, *row] for label, row in zip(schema["labels"], metrics["confusion_matrix"])]))
    titles = {"roc_curve": "ROC curve", "confusion_matrix": "Confusion matrix",
              "predicted_vs_actual": "Predicted against actual", "residuals": "Residuals"}
    parts.append(" ".join(f"![{titles[name]}]({file})" for name, file in files_for(task).items()
                          if name in titles))
    return "\n\n".join(parts)


def _performance_section(results: dict) -> str:
    performance, parity = results["performance"], results["parity"]
    return "\n\n".join([
        "## Size, speed and export",
        _table(["model.tflite", "1 row", "1024 rows"], [[
            _size(performance["model_size_bytes"]),
            f"{performance['inference_us_1_row']:.1f} us",
            f"{performance['inference_us_1024_rows']:.1f} us"]]),
        "Median of repeated LiteRT calls on the machine that trained the model. Keras and "
        f"LiteRT: {_parity(parity)}, on the test split and on rows with each missing value and "
        "each category (relative to the target's range for a regression value).",
    ])


def _limits_section(manifest: dict, results: dict) -> str:
    rows, task = results["split"]["test"], task_of(results)
    lines = [f"- The test split has {rows} rows"
             + (f": one row more or less right moves accuracy by {1 / rows:.4f}. "
                if task != "regression" else ". ")
             + "The gate fails a candidate against a champion only when the rows show it "
               "worse, and says how large a drop they can show."]
    if task == "binary":
        lines.append(f"- The threshold {manifest['model']['threshold']} weighs false positives "
                     "and false negatives alike; where one costs more, choose the threshold "
                     "for that cost.")
    lines += [
        f"- The model knows only the population behind `{manifest['data']['path']}`; read the "
        "data set's DATA.md for where it comes from and what it leaves out. Values outside "
        "the schema's ranges and categories it does not list are refused, not extrapolated.",
        "- Inference times are from the training machine; `make bench` measures the service.",
    ]
    return "\n\n".join(["## Limits", "\n".join(lines)])


def _parity(parity: dict) -> str:
    """The export check in a few words (older metrics.json: absolute difference only)."""
    scale = parity.get("scale", 1.0)
    against = "" if scale == 1.0 else f" ({parity['max_diff']:.2g} of the range {scale:g})"
    return (f"max |diff| {parity['max_abs_diff']:.2g}{against} over {parity['rows']} rows "
            f"(allowed {parity['tolerance']:g})")


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
