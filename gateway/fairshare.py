"""Interactive callers first: bulk requests (`X-Priority: bulk`, what the job workers send) take what they leave.

TorchServe has one first-come queue per model, so the order in which the gateway sends work is the only lever.
Interactive requests go at once, as always, and are counted while in flight. A bulk request's texts travel in
the same few upstream calls as any batch body, but each call waits for a bulk slot: all of the model's slots
(workers x batch size) while no interactive request of that model is in flight, one while any is. A job alone
then runs at the batch-body path's speed, and beside interactive traffic it keeps at most one call queued ahead
of them (`python -m bench.jobs` measures both).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

PRIORITY_HEADER = "x-priority"
BULK = "bulk"


class FairShare:
    def __init__(self) -> None:
        self.interactive: Counter[str] = Counter()
        self.bulk: Counter[str] = Counter()
        self._conditions: dict[str, asyncio.Condition] = {}

    def _condition(self, model: str) -> asyncio.Condition:
        condition = self._conditions.get(model)
        if condition is None:
            condition = self._conditions[model] = asyncio.Condition()
        return condition

    def limit(self, model: str, slots: int) -> int:
        """Bulk calls a model may have in flight now."""
        return slots if self.interactive[model] == 0 else 1

    @asynccontextmanager
    async def interactive_call(self, model: str) -> AsyncIterator[None]:
        self.interactive[model] += 1
        try:
            yield
        finally:
            self.interactive[model] -= 1
            if self.bulk[model]:  # only then can a bulk call be waiting (for the limit to rise)
                condition = self._condition(model)
                async with condition:
                    condition.notify_all()

    @asynccontextmanager
    async def bulk_call(self, model: str, slots: int) -> AsyncIterator[None]:
        condition = self._condition(model)
        async with condition:
            await condition.wait_for(lambda: self.bulk[model] < self.limit(model, slots))
            self.bulk[model] += 1
        try:
            yield
        finally:
            async with condition:
                self.bulk[model] -= 1
                condition.notify_all()
