"""Build-time calibration and its measure: fit the handler's temperature on the dev slice, and the expected
calibration error (ECE) the model card records before and after."""

from __future__ import annotations

import math

import torch

from handlers.calibration import temper

# Temperatures tried, log-spaced from 0.1 to 10 (steps of 4.7%): a 1-D grid is exact enough for one parameter
# and needs no optimiser; the chosen value minimises the dev slice's negative log-likelihood.
_GRID = [round(math.exp(math.log(0.1) + i * math.log(100) / 100), 4) for i in range(101)]


def negative_log_likelihood(probabilities: torch.Tensor, labels: list[int]) -> float:
    picked = probabilities[torch.arange(len(labels)), torch.tensor(labels)]
    return float(-picked.clamp_min(1e-12).log().mean())


def fit_temperature(probabilities: torch.Tensor, labels: list[int]) -> float:
    """The temperature that minimises the NLL of `labels` (1.0 when there is nothing to fit on)."""
    if not labels:
        return 1.0
    return min(_GRID, key=lambda t: (negative_log_likelihood(temper(probabilities, t), labels), abs(math.log(t))))


def expected_calibration_error(confidences: list[float], correct: list[bool], bins: int = 10) -> float:
    """ECE: the gap between confidence (the answer's score) and accuracy, averaged over equal-width confidence
    bins weighted by how many answers fall in each."""
    if not confidences:
        return 0.0
    total = 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        members = [i for i, c in enumerate(confidences) if low < c <= high or (b == 0 and c == 0.0)]
        if members:
            gap = sum(confidences[i] for i in members) / len(members) - sum(correct[i] for i in members) / len(members)
            total += abs(gap) * len(members)
    return round(total / len(confidences), 4)


def calibration_record(probabilities: torch.Tensor, labels: list[int], temperature: float) -> dict[str, float]:
    """ECE of the probabilities before and after tempering, for the card."""

    def ece(p: torch.Tensor) -> float:
        confidence, predicted = p.max(dim=-1)
        hits = [int(a) == b for a, b in zip(predicted.tolist(), labels, strict=True)]
        return expected_calibration_error(confidence.tolist(), hits)

    return {
        "temperature": temperature,
        "ece_before": ece(probabilities),
        "ece_after": ece(temper(probabilities, temperature)),
    }
