"""Interactive callers first: bulk requests (`X-Priority: bulk`, what the job workers send) take what they leave.

TorchServe has one first-come queue per model, so the order and size of what the gateway sends is the only
lever. Interactive requests go at once, as always. A model is *busy* while an interactive request of it is in
flight or ended within `quiet_s` (a closed-loop client's next request is on its way). While it is busy, bulk
texts go one per upstream call and one call at a time, so an interactive request waits behind at most one
text of bulk work; while it is quiet, they go as a batch body's texts do, in chunks over all of the model's
slots (workers x batch size), and a job alone runs at the batch-body path's speed. `python -m bench.jobs`
measures both sides in one run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

PRIORITY_HEADER = "x-priority"
BULK = "bulk"
QUIET_S = 0.05

T = TypeVar("T")
R = TypeVar("R")


class FairShare:
    def __init__(self, quiet_s: float = QUIET_S) -> None:
        self.quiet_s = quiet_s
        self.interactive: Counter[str] = Counter()
        self.bulk: Counter[str] = Counter()
        self._last_interactive: dict[str, float] = {}
        self._conditions: dict[str, asyncio.Condition] = {}

    def _condition(self, model: str) -> asyncio.Condition:
        condition = self._conditions.get(model)
        if condition is None:
            condition = self._conditions[model] = asyncio.Condition()
        return condition

    def busy_for(self, model: str) -> float:
        """Seconds the model stays busy with interactive work at least (0: it is quiet now)."""
        if self.interactive[model]:
            return self.quiet_s
        return max(0.0, self._last_interactive.get(model, float("-inf")) + self.quiet_s - time.monotonic())

    @asynccontextmanager
    async def interactive_call(self, model: str) -> AsyncIterator[None]:
        self.interactive[model] += 1
        try:
            yield
        finally:
            self.interactive[model] -= 1
            self._last_interactive[model] = time.monotonic()

    async def _admit(self, model: str, slots: int) -> bool:
        """Wait for a bulk slot (one while the model is busy, `slots` while quiet); True when it was quiet.
        Called with the model's condition held."""
        condition = self._condition(model)
        while True:
            busy = self.busy_for(model)
            # quiet: twice the slots, so a batch is queued behind the one each worker is running
            if self.bulk[model] < (1 if busy else 2 * slots):
                self.bulk[model] += 1
                return not busy
            # until a bulk call ends, or the model may have turned quiet
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(condition.wait(), timeout=busy or None)

    async def _release(self, model: str) -> None:
        condition = self._condition(model)
        async with condition:
            self.bulk[model] -= 1
            condition.notify_all()

    @asynccontextmanager
    async def bulk_call(self, model: str, slots: int) -> AsyncIterator[None]:
        """One bulk upstream call (a photo)."""
        async with self._condition(model):
            await self._admit(model, slots)
        try:
            yield
        finally:
            await self._release(model)

    async def bulk_items(
        self,
        model: str,
        items: Sequence[T],
        send: Callable[[list[T]], Awaitable[list[R]]],
        slots: int,
        chunk: int,
    ) -> list[R]:
        """A bulk body's items (texts) in upstream calls of `chunk` items over `slots` calls while the model is
        quiet, one item at a time while it is busy; the answers in the items' order."""
        pending = deque(enumerate(items))
        answers: dict[int, R] = {}
        condition = self._condition(model)

        async def runner() -> None:
            while pending:
                async with condition:
                    quiet = await self._admit(model, slots)
                    batch = [pending.popleft() for _ in range(min(chunk if quiet else 1, len(pending)))]
                try:
                    if batch:
                        for (index, _), answer in zip(batch, await send([item for _, item in batch]), strict=True):
                            answers[index] = answer
                finally:
                    await self._release(model)

        await asyncio.gather(*(runner() for _ in range(min(slots, len(items)))))
        return [answers[index] for index in range(len(items))]
