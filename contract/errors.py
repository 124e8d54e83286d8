"""The one error type for bad input (data, schema, policy, arguments): the CLI maps it to
exit 2."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path


class InputError(ValueError):
    """Input a person must fix; the message names the file, row and column where it can."""


@contextmanager
def in_file(path: str | Path):
    """Name the file in front of any InputError raised about its content."""
    try:
        yield
    except InputError as e:
        raise InputError(f"{path}: {e}") from e
