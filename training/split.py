"""A deterministic stratified train/validation/test split from a seed."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contract.errors import InputError


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # row indices, sorted
    validation: np.ndarray
    test: np.ndarray


def stratified_split(y: np.ndarray, seed: int, validation_fraction: float,
                     test_fraction: float, class_names: dict[int, str] | None = None) -> Split:
    """Each class is shuffled with `seed` and cut in the same proportions, so every part
    keeps the class balance of the whole and the same seed always gives the same rows."""
    if not (0 < validation_fraction < 1 and 0 < test_fraction < 1
            and validation_fraction + test_fraction < 1):
        raise ValueError("validation and test fractions must be in (0, 1) and sum below 1")
    rng = np.random.default_rng(seed)
    parts: tuple[list, list, list] = ([], [], [])
    for label in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == label))
        n_test = round(len(rows) * test_fraction)
        n_validation = round(len(rows) * validation_fraction)
        if min(n_test, n_validation, len(rows) - n_test - n_validation) < 1:
            name = (class_names or {}).get(int(label), label)
            raise InputError(f"only {len(rows)} row(s) have the label {name!r}: too few to put "
                             "at least one in each of the train, validation and test splits")
        parts[2].append(rows[:n_test])
        parts[1].append(rows[n_test:n_test + n_validation])
        parts[0].append(rows[n_test + n_validation:])
    train, validation, test = (np.sort(np.concatenate(p)) for p in parts)
    return Split(train, validation, test)
