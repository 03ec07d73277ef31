"""Classification metrics: accuracy with its 95% bootstrap interval, macro-F1, per-class precision/recall,
confusion, and the calibration error of the answers' scores when they are given."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from modelops.train.calibrate import expected_calibration_error

BOOTSTRAP_RESAMPLES = 1000


def _percentile_interval(values: Sequence[float], resamples: int, seed: int) -> list[float]:
    """95% percentile bootstrap interval of the mean of per-example values, resampled with replacement."""
    if not values:
        return [0.0, 0.0]
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    return [round(means[int(0.025 * resamples)], 4), round(means[int(0.975 * resamples) - 1], 4)]


def bootstrap_interval(hits: Sequence[bool], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> list[float]:
    """95% percentile bootstrap interval of the accuracy: resample the examples with replacement. On 800
    validation reviews at 0.92 it is about +-1.9 points, which is why one-point differences are not read as wins."""
    return _percentile_interval([float(hit) for hit in hits], resamples, seed)


def paired_difference_interval(
    hits: Sequence[bool], other_hits: Sequence[bool], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> list[float]:
    """95% bootstrap interval of accuracy(hits) - accuracy(other_hits) on the same examples, resampled as pairs.

    Two models scored on the same rows err on many of the same ones, so the interval of their difference is
    much narrower than either accuracy's: it is what says whether one clearly beats the other."""
    if len(hits) != len(other_hits):
        raise ValueError(f"{len(hits)} and {len(other_hits)} answers: a paired difference needs the same examples")
    return _percentile_interval([float(a) - float(b) for a, b in zip(hits, other_hits, strict=True)], resamples, seed)


def classification_report(
    y_true: Sequence[int],
    y_pred: Sequence[int],
    labels: Sequence[str],
    confidences: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Metrics as plain JSON-able data; `confusion[i][j]` counts true label i predicted as j. `confidences`
    (each answer's score for its predicted label) adds the expected calibration error `ece`."""
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    k = len(labels)
    confusion = [[0] * k for _ in range(k)]
    for t, p in zip(y_true, y_pred, strict=True):
        confusion[t][p] += 1
    per_class: dict[str, dict[str, float]] = {}
    f1s = []
    for i, label in enumerate(labels):
        tp = confusion[i][i]
        predicted = sum(confusion[r][i] for r in range(k))
        actual = sum(confusion[i])
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        f1s.append(f1)
        per_class[label] = {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "support": actual,
        }
    correct = sum(confusion[i][i] for i in range(k))
    hits = [t == p for t, p in zip(y_true, y_pred, strict=True)]
    calibration = {} if confidences is None else {"ece": expected_calibration_error(list(confidences), hits)}
    return {
        "examples": len(y_true),
        "accuracy": round(correct / len(y_true), 4) if y_true else 0.0,
        "accuracy_ci95": bootstrap_interval(hits),
        **calibration,
        "macro_f1": round(sum(f1s) / k, 4),
        "per_class": per_class,
        "labels": list(labels),
        "confusion": confusion,
    }
