"""Find the champion: the model the candidate must not fall behind (the one in production).

The reference given as CHAMPION / --champion is either a directory that holds the champion's
model.tflite and manifest.json, or an image reference such as
`127.0.0.1:5000/model-service:1.2.0`: the model is then copied out of that image (pulled
when absent, never run) into a temporary directory that lives as long as the `with` block.
An image whose registry answers "manifest unknown" (no such tag: nothing in production yet)
is no champion; any other failure to read it (a refused login, an outage, an unreachable
registry) stops the evaluation with the reason, so a gate never passes for want of a champion.
"""
from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from contract.errors import InputError
from contract.schema import Schema


@contextlib.contextmanager
def resolve(reference: str) -> Iterator[Path | None]:
    directory = Path(reference)
    if directory.is_dir():
        if not (directory / "model.tflite").is_file():
            raise InputError(f"champion {reference}: the directory holds no model.tflite")
        yield directory
        return
    with tempfile.TemporaryDirectory(prefix="champion-") as tmp:
        yield _from_image(reference, Path(tmp))


def absent(reference: str) -> bool:
    """True when `reference` is an image its registry does not have (manifest unknown)."""
    with resolve(reference) as directory:
        return directory is None


def _from_image(reference: str, destination: Path) -> Path | None:
    try:
        # The deploy extra (Docker SDK): only needed when the champion is an image.
        from deploy.image import ImageError, NoSuchImage, extract_model
    except ImportError as error:
        raise InputError(f"champion {reference!r}: no such directory, and reading it as an "
                         f"image needs the deploy extra ({error})") from error
    import docker.errors
    try:
        directory = extract_model(reference, destination)
    except NoSuchImage:
        return None
    except (ImageError, docker.errors.DockerException) as error:
        raise InputError(f"champion {reference!r}: no such directory, and as an image: "
                         f"{error}") from error
    if not (directory / "model.tflite").is_file():
        raise InputError(f"champion image {reference}: it holds no model.tflite")
    return directory


def check_comparable(theirs: Schema, ours: Schema) -> None:
    """An InputError naming the first difference that makes the champion's predictions
    incomparable with the candidate's: the task, the target, the labels (and their order, the
    order of the outputs), the positive label, or the features (names, order, types and
    categories: the encoding of the input)."""
    for what, a, b in (("task", theirs.task, ours.task),
                       ("target", theirs.target, ours.target),
                       ("labels", list(theirs.labels), list(ours.labels)),
                       ("positive label", theirs.positive_label, ours.positive_label),
                       ("features", list(theirs.feature_names), list(ours.feature_names))):
        if a != b:
            raise InputError(f"the champion and the candidate differ in their {what}: "
                             f"{_show(a)} against {_show(b)}; they cannot be compared")
    for mine, other in zip(ours.features, theirs.features):
        if (other.dtype, other.categories) != (mine.dtype, mine.categories):
            raise InputError(f"the champion's feature {mine.name!r} is {_describe(other)}, the "
                             f"candidate's {_describe(mine)}: the two cannot be compared")


def _show(value) -> str:
    return ", ".join(map(repr, value)) if isinstance(value, list) else repr(value)


def _describe(feature) -> str:
    if feature.categories:
        return f"a category of {', '.join(map(repr, feature.categories))}"
    return f"of dtype {feature.dtype}"
