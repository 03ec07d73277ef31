"""The gateway's one pooled HTTP client to its TorchServes, and the mapping of their failures to API errors.

Several TorchServes (replicas on other hosts or compose services) can stand behind one gateway: predictions go
round-robin over the healthy ones. An upstream is marked down when a request cannot reach it or its periodic
`/ping` fails, and up again when a ping or a request gets through, so a restarted TorchServe rejoins without a
gateway restart. When every upstream is marked down the gateway still tries them all, in turn: the request
itself is the probe that finds the one that came back.

Keys come from each TorchServe's own key file and are re-read when the file changes or when TorchServe rejects
a key (keys expire and get rotated), so a key rotation needs no gateway restart.

Explanations travel the same way, to TorchServe's explanations API (`/explanations/{model}`), and a model's card
comes from its management API's customized describe (`GET /models/{model}?customized=true`), which asks a
worker of the loaded version.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from contract.logs import log_event
from contract.torchserve import Keys, TorchServeError, bearer, read_keys, ready_workers
from gateway.errors import APIError
from gateway.http1 import Http1Transport
from gateway.metrics import GatewayMetrics
from gateway.observe import REQUEST_ID_HEADER, request_id
from gateway.settings import Settings, UpstreamSettings
from handlers.protocol import CARD_FIELD, SPEC_FIELD

logger = logging.getLogger(__name__)

_KEY_REJECTED = "InvalidKeyException"
# Answers worth sending to the next upstream: the model is not loaded there, no worker could take the job, or
# the worker died under it.
_RETRYABLE = frozenset({404, 503, 507})
_WORKER_DIED = "Worker died."
# `/ping` says "Healthy" unless a model's workers have kept failing past their retry time.
_HEALTHY = "Healthy"
PREDICTIONS = "predictions"
EXPLANATIONS = "explanations"


class _NoCookies(httpx.Cookies):
    """A jar that stays empty: answers' `Set-Cookie` headers are not read."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class UpstreamHTTP(httpx.AsyncClient):
    """httpx's client without a cookie jar. TorchServe sets no cookies, and a gateway must not carry a cookie
    from one caller's answer into another caller's request; yet httpx runs every answer through urllib's cookie
    machinery, which took 8% of the gateway's CPU per request in-process. `cookies` is httpx's public property
    for the jar, and the one its requests and answers go through."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        if cookies:
            raise ValueError("the upstream client keeps no cookies")


class Unreachable(Exception):
    """This upstream could not be asked (connection failed, or it rejects our key): try another one."""


class UpstreamTimeout(APIError):
    """No answer within the timeout: a 504 for the caller, unless a prediction still has a retry left."""

    def __init__(self, name: str, seconds: float) -> None:
        super().__init__(504, "upstream_timeout", f"TorchServe {name} did not answer within {seconds:g}s")


class KeyFile:
    """One TorchServe's key file, cached until its modification time changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: Keys | None = None
        self._mtime: float | None = None

    def get(self, force: bool = False) -> Keys:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        if force or self._keys is None or mtime != self._mtime:
            self._keys = read_keys(self.path)
            self._mtime = mtime
        return self._keys


class Upstream:
    """One TorchServe: where it is, its keys, and whether it answered lately."""

    def __init__(self, config: UpstreamSettings, http: httpx.AsyncClient, metrics: GatewayMetrics) -> None:
        self.config = config
        self.name = config.name
        self.http = http
        self.keys = KeyFile(config.key_file) if config.key_file else None
        self.healthy = True
        self.reason: str | None = None
        self._inference: dict[tuple[str, str], httpx.URL] = {}
        self._gauge = metrics.upstream_healthy.labels(self.name)
        self._gauge.set(1)

    def mark(self, healthy: bool, reason: str | None = None) -> None:
        """Record the latest evidence; log only changes, so a flapping upstream is visible and a steady one quiet."""
        if healthy != self.healthy:
            event = "upstream.up" if healthy else "upstream.down"
            log_event(logger, event, logging.INFO if healthy else logging.WARNING, upstream=self.name, reason=reason)
        self.healthy, self.reason = healthy, reason
        self._gauge.set(1 if healthy else 0)

    def inference(self, api: str, model: str) -> httpx.URL:
        """The URL of `model` under TorchServe's `api`, parsed once: httpx parses a URL string on every request
        (5% of the gateway's CPU per request in-process)."""
        url = self._inference.get((api, model))
        if url is None:
            url = self._inference[api, model] = httpx.URL(f"{self.config.inference_url}/{api}/{model}")
        return url

    def _auth(self, kind: str, force: bool) -> dict[str, str]:
        if self.keys is None:
            return {}
        try:
            return bearer(getattr(self.keys.get(force=force), kind))
        except TorchServeError as exc:
            raise Unreachable(str(exc)) from None

    async def send(
        self,
        method: str,
        url: str | httpx.URL,
        kind: str,
        wait: httpx.Timeout,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send with the current key; if TorchServe rejects the key, re-read the key file and try once more."""
        for attempt in range(2):
            auth = self._auth(kind, force=attempt > 0)
            try:
                response = await self.http.request(
                    method, url, headers={**auth, **(headers or {})}, timeout=wait, **kwargs
                )
            except httpx.TimeoutException:
                raise UpstreamTimeout(self.name, wait.read or 0) from None
            except httpx.TransportError as exc:
                raise Unreachable(f"not reachable ({type(exc).__name__})") from None
            if response.status_code != 400 or _KEY_REJECTED not in response.text:
                return response
            if self.keys is None:
                raise Unreachable("asks for a key, and this upstream has no key_file configured")
            logger.warning("torchserve %s rejected the %s key; re-reading %s", self.name, kind, self.keys.path)
        raise Unreachable(f"rejects the {kind} key from {self.config.key_file}")

    async def ping(self, wait: httpx.Timeout) -> bool:
        """TorchServe's own health: reachable, our key accepted, no model's workers failing for good."""
        try:
            response = await self.send("GET", f"{self.config.inference_url}/ping", "inference", wait)
        except (Unreachable, APIError) as exc:
            reason = exc.message if isinstance(exc, APIError) else str(exc)
            self.mark(False, reason)
            return False
        status = _upstream_message(response) if response.status_code != 200 else _ping_status(response)
        self.mark(True)  # it answered: requests can go there; model readiness is /readyz's business
        return status == _HEALTHY

    async def describe(self, model: str, wait: httpx.Timeout, customized: bool = False) -> list[dict[str, Any]] | None:
        """Management API status of `model` (None when not registered); `customized` adds what its handler
        says about itself (`customizedMetadata`)."""
        url = f"{self.config.management_url}/models/{model}"
        params = {"customized": "true"} if customized else None
        response = await self.send("GET", url, "management", wait, params=params)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise Unreachable(f"management answered HTTP {response.status_code}")
        return orjson.loads(response.content)

    async def models(self, wait: httpx.Timeout) -> dict[str, str]:
        """Every model registered here, with the archive its default version was registered from."""
        found: dict[str, str] = {}
        token: str | None = None
        while True:
            params = {"limit": "100", **({"next_page_token": token} if token else {})}
            response = await self.send("GET", f"{self.config.management_url}/models", "management", wait, params=params)
            if response.status_code != 200:
                raise Unreachable(f"management answered HTTP {response.status_code}")
            page = orjson.loads(response.content)
            found.update({m["modelName"]: str(m.get("modelUrl", "")) for m in page.get("models", [])})
            token = page.get("nextPageToken")
            if not token:
                return found


@dataclass(frozen=True)
class Described:
    """What a model's serving version says of itself in a customized describe: its version, its model card and
    its task spec (JSON text; "" for an archive built before archives carried one)."""

    version: str | None
    card: dict[str, Any]
    spec: str


class TorchServeClient:
    """Every configured TorchServe behind one pooled HTTP client; hands out predictions round-robin."""

    def __init__(self, settings: Settings, metrics: GatewayMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.timeout = httpx.Timeout(settings.upstream_timeout_s, connect=settings.connect_timeout_s)
        # a ping that takes longer than the interval between pings says enough
        interval = settings.upstream_check_interval_s
        self.check_timeout = httpx.Timeout(
            min(interval, settings.upstream_timeout_s), connect=min(interval, settings.connect_timeout_s)
        )
        self.http = UpstreamHTTP(timeout=self.timeout, transport=Http1Transport(settings.max_connections))
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

    def _unavailable(self, code: str, message: str) -> APIError:
        return APIError(503, code, message, retry_after=self.settings.retry_after_s)

    def _in_turn(self) -> deque[Upstream]:
        """Every upstream once, starting at the next in the rotation; those marked down go last."""
        start = next(self._turn) % len(self.upstreams)
        rotated = self.upstreams[start:] + self.upstreams[:start]
        return deque([u for u in rotated if u.healthy] + [u for u in rotated if not u.healthy])

    async def predict(
        self,
        model: str,
        content: bytes,
        content_type: str = "application/json",
        api: str = PREDICTIONS,
        headers: dict[str, str] | None = None,
        version: str | None = None,
    ) -> tuple[dict[str, Any], float]:
        """One prediction (or, with `api=EXPLANATIONS`, one explanation); returns TorchServe's JSON answer and
        the round-trip time in ms (of the last try). `headers` reach the handler with the request; `version`
        asks for that version of the model rather than its default (a bulk job pins one)."""
        try:
            return await self._predict(
                f"{model}/{version}" if version else model, content, content_type, api, headers or {}
            )
        except APIError as exc:
            self.metrics.upstream_errors.labels(model, exc.code).inc()
            raise

    async def _predict(
        self, model: str, content: bytes, content_type: str, api: str, extra: dict[str, str]
    ) -> tuple[dict[str, Any], float]:
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
                self._count_retry(model, upstream, 504, exc.message)
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
            self._count_retry(model, upstream, response.status_code, _upstream_message(response))
        if last is None:
            raise self._unavailable("upstream_unavailable", "no TorchServe answered: " + "; ".join(unreachable))
        raise self._refusal(model, *last)

    def _count_retry(self, model: str, upstream: Upstream, status: int, detail: str) -> None:
        self.metrics.upstream_retries.labels(model).inc()
        log_event(
            logger, "upstream.retry", logging.WARNING, model=model, upstream=upstream.name, status=status, detail=detail
        )

    def _refusal(self, model: str, upstream: Upstream, response: httpx.Response) -> APIError:
        """The API error for an upstream's final non-200 answer."""
        status, detail = response.status_code, _upstream_message(response)
        if _retryable(response):
            return self._unavailable(
                "model_not_ready", f"model '{model}' is not ready in TorchServe {upstream.name}: {detail}"
            )
        if status == 400:
            return APIError(422, "invalid_request", detail)
        if status == 413:
            return APIError(413, "payload_too_large", detail)
        return APIError(502, "upstream_error", f"TorchServe {upstream.name} answered HTTP {status}: {detail}")

    async def described(self, model: str) -> Described:
        """The serving version of `model`, the model card and the task spec its handler loaded, from the first
        upstream with a management API that has it loaded."""
        problems = []
        for upstream in self._in_turn():
            if upstream.config.management_url is None:
                problems.append(f"{upstream.name}: no management API configured")
                continue
            try:
                described = await upstream.describe(model, self.timeout, customized=True)
            except (Unreachable, APIError) as exc:
                problems.append(f"{upstream.name}: {exc.message if isinstance(exc, APIError) else exc}")
                continue
            description = (described or [{}])[0]
            metadata = description.get("customizedMetadata")
            card = _card(metadata)
            if card is None:
                problems.append(f"{upstream.name}: model '{model}' has no worker that described it")
                continue
            spec = metadata.get(SPEC_FIELD) if isinstance(metadata, dict) else None
            return Described(description.get("modelVersion"), card, spec if isinstance(spec, str) else "")
        raise self._unavailable("model_not_ready", f"no model card for '{model}': " + "; ".join(problems))

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
                return UpstreamStatus(upstream.name, {m: _pinged(healthy) for m in models}, None)
            described = await asyncio.gather(*(upstream.describe(m, self.timeout) for m in models))
        except (Unreachable, APIError) as exc:
            return UpstreamStatus(upstream.name, None, exc.message if isinstance(exc, APIError) else str(exc))
        return UpstreamStatus(upstream.name, dict(zip(models, map(_loaded, described), strict=True)), None)


@dataclass(frozen=True)
class UpstreamStatus:
    """One upstream's answer for /readyz and /v1/models: per model what is loaded (None: not loaded), or why
    it could not be asked."""

    name: str
    models: dict[str, dict[str, Any] | None] | None
    problem: str | None

    def ready(self, model: str) -> bool:
        info = (self.models or {}).get(model)
        return bool(info and info["ready"])


def _loaded(description: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    if not description:
        return None
    default = description[0]
    ready = ready_workers(description)
    return {
        "ready": ready > 0,
        "version": default.get("modelVersion"),
        "ready_workers": ready,
        "workers": len(default.get("workers", [])),
        "batch_size": default.get("batchSize"),
        "max_batch_delay_ms": default.get("maxBatchDelay"),
    }


def _pinged(healthy: bool) -> dict[str, Any]:
    """What a ping-only upstream (no management API) tells about a model: ready or not, nothing more."""
    return {
        "ready": healthy,
        "version": None,
        "ready_workers": None,
        "workers": None,
        "batch_size": None,
        "max_batch_delay_ms": None,
    }


def _card(metadata: Any) -> dict[str, Any] | None:
    """The model card in a customized describe: the handler sends it as JSON text under `model_card_json` (an
    object would lose its null fields to TorchServe's re-serialisation)."""
    text = metadata.get(CARD_FIELD) if isinstance(metadata, dict) else None
    if not isinstance(text, str):
        return None
    try:
        card = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return card if isinstance(card, dict) and card else None


Answer = tuple[dict[str, Any], float]


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


def _retryable(response: httpx.Response) -> bool:
    """Whether another try (elsewhere, or here once TorchServe has replaced a worker) may well succeed."""
    if response.status_code in _RETRYABLE:
        return True
    return response.status_code == 500 and _upstream_message(response) == _WORKER_DIED


def _ping_status(response: httpx.Response) -> str:
    try:
        return str(orjson.loads(response.content).get("status"))
    except (orjson.JSONDecodeError, AttributeError):
        return response.text.strip()[:100]


def _upstream_message(response: httpx.Response) -> str:
    """The human part of a TorchServe error body (its own JSON or our handler's)."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text.strip()[:300] or f"HTTP {response.status_code}"
    if isinstance(body, dict):
        if isinstance(body.get("error"), dict):
            return str(body["error"].get("message", body["error"]))
        if "message" in body:
            return str(body["message"])
        if "status" in body:
            return str(body["status"])
    return str(body)[:300]
