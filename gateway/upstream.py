"""The gateway's TorchServes as its routes use them: the pool's answers as they are, and its failures as API
errors, mapped here and nowhere else (`api_error`), so the `gateway.torchserve` package knows nothing of the
gateway's error codes and every route answers a TorchServe failure alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import orjson

from contract.catalog import TaskSpec
from gateway.errors import APIError
from gateway.metrics import GatewayMetrics
from gateway.scaling.scaler import Scaler
from gateway.settings import Settings
from gateway.torchserve.client import PREDICTIONS, Upstream
from gateway.torchserve.descriptions import Described, SavedDescriptions, UpstreamStatus
from gateway.torchserve.errors import (
    CapacityFull,
    NotReady,
    Refused,
    Starting,
    TorchServeFailure,
    Unreachable,
    UpstreamTimeout,
)
from gateway.torchserve.pool import Answer, UpstreamPool


def api_error(failure: TorchServeFailure, retry_after: int) -> APIError:
    """The answer for a TorchServe failure: 503 with `retry_after` for what passes (no upstream reachable, the
    model not ready, its worker still starting from zero, no room for its worker in the memory budget), 504 for
    no answer in time, the handler's refusal of the input as the caller's error (422, 413), and any other answer
    as a bad gateway (502)."""
    match failure:
        case Unreachable():
            return APIError(503, "upstream_unavailable", str(failure), retry_after=retry_after)
        case NotReady():
            return APIError(503, "model_not_ready", str(failure), retry_after=retry_after)
        case Starting():
            return APIError(503, "model_starting", str(failure), retry_after=retry_after)
        case CapacityFull():
            return APIError(503, "capacity_full", str(failure), retry_after=retry_after)
        case UpstreamTimeout():
            return APIError(504, "upstream_timeout", str(failure))
        case Refused(status=400):
            return APIError(422, "invalid_request", failure.detail)
        case Refused(status=413):
            return APIError(413, "payload_too_large", failure.detail)
        case _:
            return APIError(502, "upstream_error", str(failure))


class TorchServeClient:
    """The upstream pool (`gateway.torchserve.pool`) with its failures as API errors; each failed prediction is
    counted by model and error code. Every call passes the scaler (`gateway.scaling`), which starts a task's
    worker when it has none. `transport` replaces the HTTP transport to TorchServe (tests pass
    `httpx.MockTransport`); `specs` gives the routed task specs by model name (the scaler's worker ranges)."""

    def __init__(
        self,
        settings: Settings,
        metrics: GatewayMetrics,
        transport: httpx.AsyncBaseTransport | None = None,
        specs: Callable[[], dict[str, TaskSpec]] = dict,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.pool = UpstreamPool(settings, metrics, transport)
        self.scaler = Scaler(settings, metrics, self.pool.upstreams, specs)
        self._described = SavedDescriptions(settings.descriptions_dir)

    @property
    def upstreams(self) -> list[Upstream]:
        return self.pool.upstreams

    def start(self) -> None:
        """The health checks and the scaler's loop, for the app's lifetime."""
        self.pool.start_health_checks()
        self.scaler.start()

    async def aclose(self) -> None:
        await self.scaler.aclose()
        await self.pool.aclose()

    async def predict(
        self,
        model: str,
        content: bytes,
        content_type: str = "application/json",
        api: str = PREDICTIONS,
        headers: dict[str, str] | None = None,
        version: str | None = None,
        items: int = 1,
    ) -> Answer:
        """One prediction (or, with `api=EXPLANATIONS`, one explanation) of `items` texts or photos; returns
        TorchServe's JSON answer and the round-trip time in ms (of the last try). `headers` reach the handler
        with the request; `version` asks for that version of the model rather than its default (a bulk job pins
        one)."""

        def send() -> Awaitable[Answer]:
            return self.pool.predict(model, content, content_type, api, headers or {}, version)

        try:
            return await self.scaler.call(model, send, items)
        except TorchServeFailure as failure:
            error = api_error(failure, self.settings.retry_after_s)
            self.metrics.upstream_errors.labels(model, error.code).inc()
            raise error from failure

    async def described(self, model: str) -> Described:
        """The serving version of `model`, its model card and its task spec (`UpstreamPool.described`). A worker
        answers it, so a cold model is answered from its last description while that version serves, and
        started otherwise."""
        if model not in self.scaler.versions:
            await self.scaler.refresh()  # a gateway just started: which version serves, and is it warm
        last = self._described.get(model, self.scaler.versions.get(model))
        if last is not None and self.scaler.state(model) != "warm":
            return last
        try:
            described = await self.scaler.call(model, lambda: self.pool.described(model))
        except TorchServeFailure as failure:
            raise api_error(failure, self.settings.retry_after_s) from failure
        self._described.put(model, described)
        return described

    async def served(self) -> tuple[dict[str, str], bool]:
        """Every model served, and whether every upstream answered (`UpstreamPool.served`)."""
        return await self.pool.served()

    async def status(self, models: list[str]) -> list[UpstreamStatus]:
        """What each upstream has loaded (`UpstreamPool.status`)."""
        return await self.pool.status(models)


async def predict_texts(
    client: TorchServeClient,
    model: str,
    texts: list[str],
    headers: dict[str, str] | None = None,
    version: str | None = None,
) -> list[Answer]:
    """Texts in one upstream call: a plain `{"text"}` body for one, a KServe v1 `instances` body for more, which
    the handler answers as one batch slot. Answers come back in the texts' order, each with the call's round
    trip. The router's chunks of a batch body and the coalescer's groups of single requests both travel this
    way."""
    if len(texts) == 1:
        return [await client.predict(model, orjson.dumps({"text": texts[0]}), headers=headers, version=version)]
    body = orjson.dumps({"instances": [{"text": t} for t in texts]})
    answer, ms = await client.predict(model, body, headers=headers, version=version, items=len(texts))
    return [(prediction, ms) for prediction in answer["predictions"]]
