"""Choosing settings by k-fold cross-validation on the training rows, and reporting what it measured.

Why: a dev slice of a few hundred rows cannot tell settings a point apart (one standard error is about two
points at 400 rows), and small datasets cannot spare one at all. Every row is held out exactly once: the
out-of-fold probabilities of a setting are what it would answer on rows it never saw, and all settings are
compared on the same rows, paired. The cross-validated figures of the chosen settings are slightly optimistic
(they were chosen on the same predictions); with a handful of candidates per setting the difference is small,
and `docs/own-classifier.md` records it measured against rows held out of everything.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelops.train.metrics import paired_difference_interval


def fold_ids(labels: list[int], folds: int, seed: int) -> np.ndarray:
    """Each row's fold (0..folds-1), label shares kept in every fold."""
    from sklearn.model_selection import StratifiedKFold

    ids = np.zeros(len(labels), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        ids[held_out] = fold
    return ids


FitPredict = Callable[[np.ndarray, np.ndarray], np.ndarray]


def out_of_fold(folds: np.ndarray, classes: int, fit_predict: FitPredict) -> np.ndarray:
    """(rows, classes) probabilities, each row's from a model fitted on the other folds: `fit_predict(train,
    held_out)` takes row indices and returns the held-out rows' probabilities."""
    probabilities = np.zeros((len(folds), classes))
    for fold in np.unique(folds):
        held_out = np.flatnonzero(folds == fold)
        probabilities[held_out] = fit_predict(np.flatnonzero(folds != fold), held_out)
    return probabilities


# A fit that scores held-out training rows leaves out at most this share of them, so that it is nearly the model
# fitted on all of them (which is the one served).
MAX_HELD_OUT_SHARE = 0.15


def held_out_probabilities(train_rows: int, pool: np.ndarray, extra: np.ndarray, fit_predict: FitPredict) -> np.ndarray:
    """Probabilities of the `pool` training rows, each from a fit on the training rows without it, then of the
    `extra` rows (never trained on, such as a dev slice) from the first of those fits: (pool + extra, classes).

    Indices address one matrix: training rows 0..train_rows-1, extra rows after them. The pool is cut into as
    few parts as MAX_HELD_OUT_SHARE allows; with an empty pool, one fit on every training row scores `extra`.
    """
    parts = np.array_split(pool, max(1, math.ceil(len(pool) / (MAX_HELD_OUT_SHARE * train_rows))))
    scored: list[np.ndarray] = []
    for i, part in enumerate(parts):
        fit_rows = np.setdiff1d(np.arange(train_rows), part)
        scored.append(fit_predict(fit_rows, np.concatenate([part, extra]) if i == 0 else part))
    first = scored[0]
    return np.concatenate([first[: len(parts[0])], *scored[1:], first[len(parts[0]) :]])


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(probabilities.argmax(axis=1) == labels))


def log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, 1.0))))


@dataclass(frozen=True)
class Choice:
    setting: Any
    probabilities: np.ndarray
    accuracy: float
    log_loss: float


def choose(candidates: Mapping[Any, np.ndarray], labels: np.ndarray, floor: float = 0.0) -> Choice:
    """The candidate with the lowest out-of-fold log loss among those whose out-of-fold accuracy is at least
    `floor` and within one row of the best (ties: the earlier candidate, so list the simpler settings first).
    Log loss is smoother than accuracy on a few hundred rows; the accuracy guard keeps a choice from trading
    answers for confidence."""
    scored = [
        Choice(setting, probabilities, accuracy(probabilities, labels), log_loss(probabilities, labels))
        for setting, probabilities in candidates.items()
    ]
    best = max(choice.accuracy for choice in scored)
    allowed = [c for c in scored if c.accuracy >= max(floor, best - 1 / len(labels) + 1e-12)] or scored
    return min(allowed, key=lambda c: c.log_loss)


def blend_grid(steps: int = 20) -> list[float]:
    return [i / steps for i in range(steps + 1)]


def hits(probabilities: np.ndarray, labels: np.ndarray) -> list[bool]:
    return [bool(hit) for hit in probabilities.argmax(axis=1) == labels]


def paired(served: np.ndarray, other: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """The served model's out-of-fold accuracy minus another's on the same rows, with its 95% interval."""
    ours, theirs = hits(served, labels), hits(other, labels)
    interval = paired_difference_interval(ours, theirs)
    return {
        "accuracy": round(float(np.mean(theirs)), 4),
        "difference": round(float(np.mean(ours) - np.mean(theirs)), 4),
        "difference_ci95": interval,
    }
