"""Temperature scaling of served probabilities, applied by every handler after its last step.

A fine-tuned network (and a blend of two models) is usually over- or under-confident: its `score` is not the
share of answers with that score that are right. One temperature T, fitted on the dev slice at build time
(`modelops.train.calibrate`), fixes most of that: p_i ∝ p_i^(1/T), the softmax of the log-probabilities divided by
T. It never changes which label wins, only how sure the answer says it is.
"""

from __future__ import annotations

import torch


def temper(probabilities: torch.Tensor, temperature: float) -> torch.Tensor:
    """Rows of class probabilities rescaled by the temperature (1.0: unchanged)."""
    if temperature == 1.0:
        return probabilities
    return (probabilities.clamp_min(1e-12).log() / temperature).softmax(dim=-1)
