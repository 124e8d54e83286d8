"""Reading and writing the model directory's files (the I/O edge of train and evaluate)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from contract.errors import InputError
from contract.manifest import MANIFEST_FILE


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_json(path: Path, content: dict) -> None:
    write_text(path, json.dumps(content, indent=2) + "\n")


def write_text(path: Path, text: str) -> None:
    """Written beside and renamed into place: a reader sees the old file or the new, whole."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)


@contextlib.contextmanager
def replacing(directory: Path) -> Iterator[Path]:
    """A new directory next to `directory`, for a whole set of artifacts: when the block ends
    without an error it replaces `directory` (the old one is moved aside, the new one renamed
    into place, the old one removed); on an error it is removed and `directory` is untouched.
    Refuses to replace a directory that holds files but no manifest.json: someone else's."""
    directory = Path(directory)
    if directory.is_dir() and any(directory.iterdir()) \
            and not (directory / MANIFEST_FILE).is_file():
        raise InputError(f"{directory}: holds files but no {MANIFEST_FILE}, so it is not a "
                         "model directory; training replaces the model directory whole, so "
                         "name a new or empty one")
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.new-", dir=directory.parent))
    try:
        staging.chmod(0o755)  # mkdtemp's 0700 would hide the model from other users
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    aside = staging.with_name(staging.name.replace(".new-", ".old-", 1))
    if directory.exists():
        os.rename(directory, aside)
    os.rename(staging, directory)
    shutil.rmtree(aside, ignore_errors=True)


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
