"""Concurrent single-text predictions of one model, sent to TorchServe together (`GATEWAY_COALESCE_WINDOW_MS`,
off at 0).

Each request TorchServe takes costs its frontend and the worker hand-off about 0.3-1.2 ms of CPU whatever it
carries (`python -m bench` prints it per process). With a window, texts of one model arriving within it travel
as one KServe v1 `instances` request, and each caller gets its own answer back.
Groups are only formed when enough texts are in flight to keep every worker's batch full
without them (`predict` says how), so a lone client and moderate concurrency see plain requests. Callers do
not share their errors: if the model server refuses the shared request as invalid, each text is
sent again alone, so only the bad one is refused. The handler's batch log names every caller's request id.
What it bought, and what the window costs a lone request, is in docs/performance.md.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

from gateway.errors import APIError
from gateway.observe import REQUEST_ID_HEADER, request_id
from gateway.torchserve.pool import Answer
from gateway.upstream import TorchServeClient, predict_texts


@dataclass
class _Waiting:
    text: str
    request_id: str
    answer: asyncio.Future[Answer]


class Coalescer:
    def __init__(self, client: TorchServeClient, window_s: float) -> None:
        self.client = client
        self.window_s = window_s
        self.waiting: dict[str, list[_Waiting]] = {}
        self.in_flight: Counter[str] = Counter()  # texts of each model between arrival and answer
        self._sending: set[asyncio.Task[None]] = set()  # strong references until each send finishes

    async def predict(self, model: str, text: str, slots: int) -> Answer:
        """`text`'s answer from `model`, sent with the other texts for it that arrive within the window.

        `slots` is how many requests the model's workers take in one round of batches (workers x batch size).
        A group holds the texts in flight divided by it, so at least that many requests stay upstream and every
        worker's batch fills: below twice `slots` texts in flight, a text goes at once, alone (a lone client
        never pays the window, and moderate concurrency keeps plain requests, measured faster there).
        """
        loop = asyncio.get_running_loop()
        item = _Waiting(text, request_id.get(), loop.create_future())
        self.in_flight[model] += 1
        try:
            most = self.in_flight[model] // slots
            if most < 2 and model not in self.waiting:
                return await self._alone(model, item)
            group = self.waiting.setdefault(model, [])
            group.append(item)
            if len(group) == 1:
                loop.call_later(self.window_s, self._send_soon, model, group)
            if len(group) >= max(2, most):
                self._send_soon(model, group)
            return await item.answer
        finally:
            self.in_flight[model] -= 1

    def _send_soon(self, model: str, group: list[_Waiting]) -> None:
        if self.waiting.get(model) is not group:  # already on its way (full before its window ended)
            return
        del self.waiting[model]
        task = asyncio.create_task(self._send(model, group))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, model: str, group: list[_Waiting]) -> None:
        """One upstream call for the group; each caller gets its own answer, or the error of the call."""
        try:
            results = await self._ask(model, group)
        except APIError as exc:
            if exc.status == 422 and len(group) > 1:  # one text was refused: each alone, so only it fails
                await asyncio.gather(*(self._send(model, [item]) for item in group))
                return
            self._fail(group, exc)
            return
        except Exception as exc:  # anything else, a bug included, must still end every caller's wait
            self._fail(group, exc)
            return
        for item, result in zip(group, results, strict=True):
            if not item.answer.done():  # a caller that went away is not answered
                item.answer.set_result(result)

    @staticmethod
    def _fail(group: list[_Waiting], exc: Exception) -> None:
        for item in group:
            if not item.answer.done():
                item.answer.set_exception(exc)

    async def _alone(self, model: str, item: _Waiting) -> Answer:
        return (await self._ask(model, [item]))[0]

    async def _ask(self, model: str, group: list[_Waiting]) -> list[Answer]:
        """One upstream call for the group; its request-id header names every caller."""
        ids = ",".join(item.request_id for item in group)
        return await predict_texts(self.client, model, [item.text for item in group], {REQUEST_ID_HEADER: ids})
