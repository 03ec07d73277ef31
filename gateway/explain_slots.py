"""Explanations get their own concurrency limit, so a burst of them cannot take every model worker.

An explanation costs tens of forward passes (about 0.6 s for a 200-word review, 1 s for a photo on 2 cores)
and runs in the same TorchServe workers as predictions. With at most `explain_concurrency` explanation
requests per model in flight (below the model's worker count), the other workers keep answering predictions;
an explanation request over the limit is refused at once with 429 and Retry-After instead of queueing behind
the others, since a client waiting seconds in a queue is worse off than one told when to come back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from gateway.errors import APIError
from gateway.metrics import GatewayMetrics


class ExplainSlots:
    def __init__(self, per_model: int, retry_after_s: int, metrics: GatewayMetrics) -> None:
        self.per_model = per_model
        self.retry_after_s = retry_after_s
        self.metrics = metrics
        self.running: Counter[str] = Counter()

    @asynccontextmanager
    async def hold(self, model: str) -> AsyncIterator[None]:
        """One slot of `model` for the duration of the block, or a 429 when all are taken."""
        if self.running[model] >= self.per_model:
            self.metrics.explain_refused.labels(model).inc()
            raise APIError(
                429,
                "explain_busy",
                f"{self.running[model]} explanation request(s) of model '{model}' are running, the limit is "
                f"{self.per_model}; retry in {self.retry_after_s}s (predictions are not limited by this)",
                retry_after=self.retry_after_s,
            )
        self.running[model] += 1
        try:
            yield
        finally:
            self.running[model] -= 1
