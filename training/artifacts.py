"""Reading and writing the model directory's files (the I/O edge of train and evaluate)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from contract.errors import InputError


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_json(path: Path, content: dict) -> None:
    path.write_text(json.dumps(content, indent=2) + "\n")


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except OSError as e:
        raise InputError(f"{path}: cannot read it ({e.strerror}); train a model into "
                         f"{path.parent} first") from e
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e})") from e


def read_verified(path: Path, expected_sha256: str) -> bytes:
    """The file's bytes, refused when they are not the ones the manifest recorded."""
    try:
        content = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read it ({e.strerror})") from e
    if hashlib.sha256(content).hexdigest() != expected_sha256:
        raise InputError(f"{path}: its sha256 differs from the one in manifest.json "
                         f"({expected_sha256[:12]}...): the file changed after training")
    return content


def display_path(path: str | Path) -> str:
    """Relative to the working directory when inside it (as the manifest records the data and
    the report names the policy), else absolute."""
    absolute = Path(path).resolve()
    try:
        return absolute.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return os.fspath(absolute)
