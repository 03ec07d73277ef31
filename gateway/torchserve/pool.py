"""Every configured TorchServe behind one pooled HTTP client: rotation, retries and health.

Several TorchServes (replicas on other hosts or compose services) can stand behind one gateway: predictions go
round-robin over the healthy ones. An upstream is marked down when a request cannot reach it or its periodic
`/ping` fails, and up again when a ping or a request gets through, so a restarted TorchServe rejoins without a
gateway restart. When every upstream is marked down the gateway still tries them all, in turn: the request
itself is the probe that finds the one that came back.

A prediction an upstream refuses with 404 (model not loaded there yet), 503 (no worker free) or "Worker died."
(its worker died mid-batch) is sent again, to the next upstream in turn, up to `upstream_retries` times: a
classification has no side effects, so the caller sees an answer instead of the hiccup. TorchServe 0.12 says
"Worker died." with 507 when it has already reaped the killed worker's exit status (137), and with 500 when
the closed socket reaches it first; both mean the worker never answered.

A prediction with no answer within `upstream_timeout_s` is sent again the same way, from the same budget:
TorchServe 0.12 drops without an answer the jobs a worker was still gathering into a batch when that worker
dies (the dying worker's thread is interrupted before the batch exists, and the next batch starts by
clearing what was gathered), so such a caller would otherwise wait for nothing. With TorchServe's queue
bounded (`job_queue_size`), a healthy TorchServe answers well inside the timeout, so a re-send is rare and
costs at most one more model call.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from typing import Any

import httpx
import orjson

from contract.logs import log_event
from gateway.http1 import Http1Transport
from gateway.metrics import GatewayMetrics
from gateway.observe import REQUEST_ID_HEADER, request_id
from gateway.settings import Settings
from gateway.torchserve import logger
from gateway.torchserve.client import Upstream, answer_message
from gateway.torchserve.descriptions import Described, UpstreamStatus, loaded, pinged
from gateway.torchserve.errors import NotReady, Refused, Unreachable, UpstreamTimeout
from gateway.torchserve.http import CookielessClient

# Answers worth sending to the next upstream: the model is not loaded there, no worker could take the job, or
# the worker died under it.
_RETRYABLE = frozenset({404, 503, 507})
_WORKER_DIED = "Worker died."
# The status a re-sent timeout is logged with: the one its caller would have got without the retry.
_TIMED_OUT = 504

# One prediction's answer: TorchServe's JSON, and the round trip of the try that got it, in ms.
Answer = tuple[dict[str, Any], float]


class UpstreamPool:
    """Every configured TorchServe behind one pooled HTTP client; hands out predictions round-robin. `transport`
    replaces the lean HTTP/1.1 one to TorchServe (tests pass `httpx.MockTransport`)."""

    def __init__(
        self, settings: Settings, metrics: GatewayMetrics, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.timeout = httpx.Timeout(settings.upstream_timeout_s, connect=settings.connect_timeout_s)
        # a ping that takes longer than the interval between pings says enough
        interval = settings.upstream_check_interval_s
        self.check_timeout = httpx.Timeout(
            min(interval, settings.upstream_timeout_s), connect=min(interval, settings.connect_timeout_s)
        )
        self.http = CookielessClient(
            timeout=self.timeout, transport=transport or Http1Transport(settings.max_connections)
        )
        self.upstreams = [Upstream(u, self.http, metrics) for u in settings.upstreams]
        self._turn = itertools.count()
        self._checker: asyncio.Task[None] | None = None

    def start_health_checks(self) -> None:
        self._checker = asyncio.create_task(self._check_forever(), name="upstream-health")

    async def aclose(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
            await asyncio.gather(self._checker, return_exceptions=True)
        await self.http.aclose()

    async def _check_forever(self) -> None:
        while True:
            try:
                await asyncio.gather(*(u.ping(self.check_timeout) for u in self.upstreams))
            except Exception as exc:  # a bug here must not silently end the checks for the app's lifetime
                log_event(logger, "upstream.check_failed", logging.ERROR, error=repr(exc))
            await asyncio.sleep(self.settings.upstream_check_interval_s)

    def _in_turn(self) -> deque[Upstream]:
        """Every upstream once, starting at the next in the rotation; those marked down go last."""
        start = next(self._turn) % len(self.upstreams)
        rotated = self.upstreams[start:] + self.upstreams[:start]
        return deque([u for u in rotated if u.healthy] + [u for u in rotated if not u.healthy])

    async def predict(
        self, model: str, content: bytes, content_type: str, api: str, extra: dict[str, str], version: str | None
    ) -> Answer:
        """One prediction (or, with `api=EXPLANATIONS`, one explanation) of `model` (its `version` when one is
        named). Raises `Unreachable` when no upstream could be asked, `UpstreamTimeout` when the last try got no
        answer in time, `NotReady` or `Refused` for the last refusal."""
        if version:
            model = f"{model}/{version}"
        # the caller's own headers win: a coalesced request names every caller's request id
        headers = {"Content-Type": content_type, REQUEST_ID_HEADER: request_id.get(), **extra}
        pending = self._in_turn()
        retries_left = self.settings.upstream_retries
        unreachable: list[str] = []
        last: tuple[Upstream, httpx.Response] | None = None
        while pending:
            upstream = pending.popleft()
            url = upstream.inference(api, model)
            started = time.perf_counter()
            try:
                response = await upstream.send("POST", url, "inference", self.timeout, content=content, headers=headers)
            except Unreachable as exc:
                upstream.mark(False, str(exc))
                unreachable.append(f"{upstream.name}: {exc}")
                continue
            except UpstreamTimeout as exc:
                if not retries_left:
                    raise
                retries_left -= 1
                pending.append(upstream)
                self._count_retry(model, upstream, _TIMED_OUT, str(exc))
                continue
            elapsed_ms = (time.perf_counter() - started) * 1000
            upstream.mark(True)
            if response.status_code == 200:
                return orjson.loads(response.content), elapsed_ms
            last = (upstream, response)
            if not _retryable(response) or not retries_left:
                break
            retries_left -= 1
            pending.append(upstream)  # after the others: the next try goes elsewhere when there is elsewhere
            self._count_retry(model, upstream, response.status_code, answer_message(response))
        if last is None:
            raise Unreachable("no TorchServe answered: " + "; ".join(unreachable))
        raise _refusal(model, *last)

    def _count_retry(self, model: str, upstream: Upstream, status: int, detail: str) -> None:
        self.metrics.upstream_retries.labels(model).inc()
        log_event(
            logger, "upstream.retry", logging.WARNING, model=model, upstream=upstream.name, status=status, detail=detail
        )

    async def described(self, model: str) -> Described:
        """The serving version of `model`, the model card and the task spec its handler loaded, from the first
        upstream with a management API that has it loaded; `NotReady` naming each upstream's problem if none."""
        problems = []
        for upstream in self._in_turn():
            if upstream.config.management_url is None:
                problems.append(f"{upstream.name}: no management API configured")
                continue
            try:
                description = await upstream.describe(model, self.timeout, customized=True)
            except (Unreachable, UpstreamTimeout) as exc:
                problems.append(f"{upstream.name}: {exc}")
                continue
            described = Described.read((description or [{}])[0])
            if described is None:
                problems.append(f"{upstream.name}: model '{model}' has no worker that described it")
                continue
            return described
        raise NotReady(f"no model card for '{model}': " + "; ".join(problems))

    async def served(self) -> tuple[dict[str, str], bool]:
        """Every model the upstreams with a management API serve, each with the archive of its default version
        on the first upstream that has it; and whether every such upstream answered (when one did not, a model
        missing from the answers may still be served there)."""
        managed = [u for u in self.upstreams if u.config.management_url is not None]
        answers = await asyncio.gather(*(u.models(self.check_timeout) for u in managed), return_exceptions=True)
        served: dict[str, str] = {}
        for answer in answers:
            if isinstance(answer, dict):
                served = answer | served
        complete = bool(managed) and not any(isinstance(a, BaseException) for a in answers)
        return served, complete

    async def status(self, models: list[str]) -> list[UpstreamStatus]:
        """What each upstream has loaded, asked concurrently."""
        return await asyncio.gather(*(self._status(u, models) for u in self.upstreams))

    async def _status(self, upstream: Upstream, models: list[str]) -> UpstreamStatus:
        try:
            if upstream.config.management_url is None:
                healthy = await upstream.ping(self.check_timeout)
                if not upstream.healthy:
                    return UpstreamStatus(upstream.name, None, upstream.reason)
                return UpstreamStatus(upstream.name, {m: pinged(healthy) for m in models}, None)
            described = await asyncio.gather(*(upstream.describe(m, self.timeout) for m in models))
        except (Unreachable, UpstreamTimeout) as exc:
            return UpstreamStatus(upstream.name, None, str(exc))
        return UpstreamStatus(upstream.name, dict(zip(models, map(loaded, described), strict=True)), None)


def _retryable(response: httpx.Response) -> bool:
    """Whether another try (elsewhere, or here once TorchServe has replaced a worker) may well succeed."""
    if response.status_code in _RETRYABLE:
        return True
    return response.status_code == 500 and answer_message(response) == _WORKER_DIED


def _refusal(model: str, upstream: Upstream, response: httpx.Response) -> NotReady | Refused:
    """The failure an upstream's final non-200 answer ends a prediction with."""
    detail = answer_message(response)
    if _retryable(response):
        return NotReady(f"model '{model}' is not ready in TorchServe {upstream.name}: {detail}")
    return Refused(upstream.name, response.status_code, detail)
