"""`python -m training train|evaluate`: exit 0 done/passed, 1 gate failed, 2 usage or input
error (argparse uses 2 for usage errors too)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from contract.errors import InputError

DATA_DIR = Path("data")
SCHEMA = DATA_DIR / "schema.json"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    commands = p.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="validate the data, train, export, write artifacts")
    train.add_argument("--model-dir", type=Path, required=True, help="where to write artifacts")
    train.add_argument("--data", type=Path, help=f"the CSV (default: the one in {DATA_DIR}/)")
    train.add_argument("--schema", type=Path, default=SCHEMA, help=f"schema (default {SCHEMA})")
    train.add_argument("--quiet", action="store_true", help="print nothing but errors")
    evaluate = commands.add_parser("evaluate", help="score the model, apply the gate, report")
    evaluate.add_argument("--model-dir", type=Path, required=True, help="a trained model's dir")
    evaluate.add_argument("--champion", help="the model to beat: a directory with model.tflite")
    evaluate.add_argument("--data", type=Path, help="the CSV (default: the manifest's)")
    evaluate.add_argument("--quiet", action="store_true", help="print nothing but errors")
    for command in (train, evaluate):
        command.add_argument("--gate", type=Path,
                             help="the gate policy (default data/gate.toml when there, else "
                                  "training/gates/<task>.toml)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out = (lambda line: None) if args.quiet else (lambda line: print(line, flush=True))
    try:
        if args.command == "train":
            return _train(args, out)
        # Imported here: evaluate needs LiteRT, not TensorFlow (3 s to import).
        from training import evaluate
        return evaluate.run(args.model_dir, args.champion, args.gate, args.data, out)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def the_csv(directory: Path) -> Path:
    """The data set: the one CSV in data/, so a team swaps the file under any name."""
    found = sorted(directory.glob("*.csv"))
    if len(found) != 1:
        raise InputError(f"{directory}/ holds {len(found)} CSV files, not one; name the data "
                         "set with --data")
    return found[0]


def _train(args: argparse.Namespace, out) -> int:
    from training import gate, train
    from training.config import TrainConfig
    from training.export import ParityError
    from contract.schema import Schema

    task = Schema.load(args.schema).task
    policy = gate.load_policy(args.gate or gate.default_policy(task), task)
    try:
        train.run(args.data or the_csv(DATA_DIR), args.schema, args.model_dir, TrainConfig(),
                  policy, out)
    except ParityError as e:
        print(f"error: export failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
