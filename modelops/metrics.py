"""Classification metrics without scikit-learn: accuracy, macro-F1, per-class precision/recall, confusion."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def classification_report(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]) -> dict[str, Any]:
    """Metrics as plain JSON-able data; `confusion[i][j]` counts true label i predicted as j."""
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
    return {
        "examples": len(y_true),
        "accuracy": round(correct / len(y_true), 4) if y_true else 0.0,
        "macro_f1": round(sum(f1s) / k, 4),
        "per_class": per_class,
        "labels": list(labels),
        "confusion": confusion,
    }
