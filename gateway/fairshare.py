"""Interactive callers first: bulk requests (`X-Priority: bulk`, what the job workers send) take what they leave.

TorchServe has one first-come queue per model, so the order and size of what the gateway sends is the only
lever. Interactive requests go at once, as always. The machine is *busy* while an interactive request of any
task is in flight or ended within `quiet_s` (a closed-loop client's next request is on its way): the workers
of every task share the same cores, so a job on one task that ignored another task's callers took a third of
their throughput (disaster callers beside a sentiment job: 0.67x). While it is busy, bulk
texts go one per upstream call and one call at a time, so an interactive request waits behind at most one
text of bulk work, and after each such call bulk work rests as long as the call took: on two cores a bulk
text running back to back beside one interactive caller took 28% of that caller's throughput (sentiment),
resting half the time leaves it CPU enough. While the model is quiet, bulk texts go as a batch body's texts
do, in chunks over all of the model's slots (workers x batch size), and a job alone runs at the batch-body
path's speed. `python -m bench.jobs` measures both sides in one run.
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
# while busy, bulk work rests this many times as long as its last call took
BUSY_REST = 1.0

T = TypeVar("T")
R = TypeVar("R")


class FairShare:
    def __init__(self, quiet_s: float = QUIET_S) -> None:
        self.quiet_s = quiet_s
        self.interactive: Counter[str] = Counter()
        self.bulk: Counter[str] = Counter()
        self._last_interactive = float("-inf")
        self._rest_until: dict[str, float] = {}
        self._conditions: dict[str, asyncio.Condition] = {}

    def _condition(self, model: str) -> asyncio.Condition:
        condition = self._conditions.get(model)
        if condition is None:
            condition = self._conditions[model] = asyncio.Condition()
        return condition

    def busy_for(self, model: str) -> float:
        """Seconds the machine stays busy with interactive work at least (0: it is quiet now). Any task's
        interactive calls count, not only `model`'s: they all run on the same cores."""
        if self.interactive.total():
            return self.quiet_s
        return max(0.0, self._last_interactive + self.quiet_s - time.monotonic())

    @asynccontextmanager
    async def interactive_call(self, model: str) -> AsyncIterator[None]:
        self.interactive[model] += 1
        try:
            yield
        finally:
            self.interactive[model] -= 1
            self._last_interactive = time.monotonic()

    async def _admit(self, model: str, slots: int) -> bool:
        """Wait for a bulk slot (one while the model is busy, `slots` while quiet); True when it was quiet.
        Called with the model's condition held."""
        condition = self._condition(model)
        while True:
            busy = self.busy_for(model)
            rest = self._rest_until.get(model, 0.0) - time.monotonic() if busy else 0.0
            # quiet: twice the slots, so a batch is queued behind the one each worker is running
            if rest <= 0 and self.bulk[model] < (1 if busy else 2 * slots):
                self.bulk[model] += 1
                return not busy
            # until a bulk call ends, the rest is over, or the model may have turned quiet
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(condition.wait(), timeout=(min(rest, busy) if rest > 0 else busy) or None)

    def _rest(self, model: str, quiet: bool, started: float) -> None:
        """After a call made while busy, bulk work rests `BUSY_REST` times as long as it took."""
        if not quiet:
            now = time.monotonic()
            self._rest_until[model] = now + (now - started) * BUSY_REST

    async def _release(self, model: str) -> None:
        condition = self._condition(model)
        async with condition:
            self.bulk[model] -= 1
            condition.notify_all()

    @asynccontextmanager
    async def bulk_call(self, model: str, slots: int) -> AsyncIterator[None]:
        """One bulk upstream call (a photo)."""
        async with self._condition(model):
            quiet = await self._admit(model, slots)
        started = time.monotonic()
        try:
            yield
        finally:
            self._rest(model, quiet, started)
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
                started = time.monotonic()
                try:
                    if batch:
                        for (index, _), answer in zip(batch, await send([item for _, item in batch]), strict=True):
                            answers[index] = answer
                finally:
                    self._rest(model, quiet, started)
                    await self._release(model)

        await asyncio.gather(*(runner() for _ in range(min(slots, len(items)))))
        return [answers[index] for index in range(len(items))]
