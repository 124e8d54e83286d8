"""Find the champion: the model the candidate must not fall behind (the one in production).

`resolve` turns the reference given as CHAMPION / --champion into a directory that holds the
champion's model.tflite (and, when it has one, its manifest.json).
"""
from __future__ import annotations

from pathlib import Path

from training.errors import InputError


def resolve(reference: str) -> Path:
    directory = Path(reference)
    if directory.is_dir():
        if not (directory / "model.tflite").is_file():
            raise InputError(f"champion {reference}: the directory holds no model.tflite")
        return directory
    raise InputError(f"champion {reference!r}: no such directory; give the directory of a "
                     "trained model (one that holds model.tflite)")
