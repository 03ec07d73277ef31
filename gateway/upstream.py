"""The gateway's TorchServes as its routes use them: the pool's answers as they are, and its failures as API
errors, mapped here and nowhere else (`api_error`), so the `gateway.torchserve` package knows nothing of the
gateway's error codes and every route answers a TorchServe failure alike.
"""

from __future__ import annotations

import httpx
import orjson

from gateway.errors import APIError
from gateway.metrics import GatewayMetrics
from gateway.settings import Settings
from gateway.torchserve.client import PREDICTIONS, Upstream
from gateway.torchserve.descriptions import Described, UpstreamStatus
from gateway.torchserve.errors import NotReady, Refused, TorchServeFailure, Unreachable, UpstreamTimeout
from gateway.torchserve.pool import Answer, UpstreamPool


def api_error(failure: TorchServeFailure, retry_after: int) -> APIError:
    """The answer for a TorchServe failure: 503 with `retry_after` for what passes (no upstream reachable, the
    model not ready), 504 for no answer in time, the handler's refusal of the input as the caller's error
    (422, 413), and any other answer as a bad gateway (502)."""
    match failure:
        case Unreachable():
            return APIError(503, "upstream_unavailable", str(failure), retry_after=retry_after)
        case NotReady():
            return APIError(503, "model_not_ready", str(failure), retry_after=retry_after)
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
    counted by model and error code. `transport` replaces the HTTP transport to TorchServe (tests pass
    `httpx.MockTransport`)."""

    def __init__(
        self, settings: Settings, metrics: GatewayMetrics, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.pool = UpstreamPool(settings, metrics, transport)

    @property
    def upstreams(self) -> list[Upstream]:
        return self.pool.upstreams

    def start_health_checks(self) -> None:
        self.pool.start_health_checks()

    async def aclose(self) -> None:
        await self.pool.aclose()

    async def predict(
        self,
        model: str,
        content: bytes,
        content_type: str = "application/json",
        api: str = PREDICTIONS,
        headers: dict[str, str] | None = None,
        version: str | None = None,
    ) -> Answer:
        """One prediction (or, with `api=EXPLANATIONS`, one explanation); returns TorchServe's JSON answer and
        the round-trip time in ms (of the last try). `headers` reach the handler with the request; `version`
        asks for that version of the model rather than its default (a bulk job pins one)."""
        try:
            return await self.pool.predict(model, content, content_type, api, headers or {}, version)
        except TorchServeFailure as failure:
            error = api_error(failure, self.settings.retry_after_s)
            self.metrics.upstream_errors.labels(model, error.code).inc()
            raise error from failure

    async def described(self, model: str) -> Described:
        """The serving version of `model`, its model card and its task spec (`UpstreamPool.described`)."""
        try:
            return await self.pool.described(model)
        except TorchServeFailure as failure:
            raise api_error(failure, self.settings.retry_after_s) from failure

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
    answer, ms = await client.predict(model, body, headers=headers, version=version)
    return [(prediction, ms) for prediction in answer["predictions"]]
