"""The gateway's one pooled HTTP client to TorchServe, and the mapping of its failures to API errors.

Keys come from TorchServe's key file and are re-read when the file changes or when TorchServe rejects a key
(keys expire and get rotated), so a key rotation needs no gateway restart.

A prediction TorchServe refuses with 503 or 507 (its worker died mid-batch, or none was free at that moment)
is sent again, up to `upstream_retries` times: a classification has no side effects, and TorchServe restarts a
dead worker or hands the job to the other one, so the caller sees an answer instead of the crash.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from gateway.errors import APIError
from gateway.http1 import Http1Transport
from gateway.metrics import GatewayMetrics
from gateway.observe import REQUEST_ID_HEADER, request_id
from gateway.settings import Settings
from modelops.logs import log_event
from modelops.torchserve import Keys, TorchServeError, bearer, read_keys

logger = logging.getLogger(__name__)

_KEY_REJECTED = "InvalidKeyException"
# TorchServe's answers when a worker died under the request or no worker could take it: worth one more try.
_RETRYABLE = frozenset({503, 507})


class KeyFile:
    """TorchServe's key file, cached until its modification time changes."""

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


class TorchServeClient:
    def __init__(self, settings: Settings, metrics: GatewayMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.keys = KeyFile(settings.torchserve_key_file)
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.upstream_timeout_s, connect=settings.connect_timeout_s),
            transport=Http1Transport(settings.max_connections),
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    def _unavailable(self, code: str, message: str) -> APIError:
        return APIError(503, code, message, retry_after=self.settings.retry_after_s)

    def _key(self, kind: str, force: bool = False) -> str:
        try:
            return getattr(self.keys.get(force=force), kind)
        except TorchServeError as exc:
            raise self._unavailable("upstream_unavailable", str(exc)) from None

    async def _send(
        self, method: str, url: str, kind: str, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Send with the current key; if TorchServe rejects the key, re-read the key file and retry once."""
        for attempt in range(2):
            auth = bearer(self._key(kind, force=attempt > 0))
            try:
                response = await self.http.request(method, url, headers={**auth, **(headers or {})}, **kwargs)
            except httpx.TimeoutException:
                raise APIError(
                    504,
                    "upstream_timeout",
                    f"TorchServe did not answer within {self.settings.upstream_timeout_s:g}s",
                ) from None
            except httpx.TransportError as exc:
                raise self._unavailable(
                    "upstream_unavailable", f"TorchServe is not reachable ({type(exc).__name__})"
                ) from None
            if response.status_code == 400 and _KEY_REJECTED in response.text:
                logger.warning("torchserve rejected the %s key; re-reading %s", kind, self.keys.path)
                continue
            return response
        raise self._unavailable("upstream_auth", f"TorchServe rejects the {kind} key from {self.keys.path}")

    async def predict(
        self, model: str, content: bytes, content_type: str = "application/json"
    ) -> tuple[dict[str, Any], float]:
        """One prediction; returns TorchServe's JSON answer and the round-trip time in ms (of the last try)."""
        try:
            return await self._predict(model, content, content_type)
        except APIError as exc:
            self.metrics.upstream_errors.labels(model, exc.code).inc()
            raise

    async def _predict(self, model: str, content: bytes, content_type: str) -> tuple[dict[str, Any], float]:
        headers = {"Content-Type": content_type, REQUEST_ID_HEADER: request_id.get()}
        url = f"{self.settings.torchserve_inference_url}/predictions/{model}"
        retries_left = self.settings.upstream_retries
        while True:
            started = time.perf_counter()
            response = await self._send("POST", url, "inference", content=content, headers=headers)
            elapsed_ms = (time.perf_counter() - started) * 1000
            status = response.status_code
            if status == 200:
                return orjson.loads(response.content), elapsed_ms
            detail = _upstream_message(response)
            if status not in _RETRYABLE or not retries_left:
                break
            retries_left -= 1
            self.metrics.upstream_retries.labels(model).inc()
            log_event(logger, "upstream.retry", logging.WARNING, model=model, status=status, detail=detail)
        if status in (404, *_RETRYABLE):
            raise self._unavailable("model_not_ready", f"model '{model}' is not ready in TorchServe: {detail}")
        if status == 400:
            raise APIError(422, "invalid_request", detail)
        if status == 413:
            raise APIError(413, "payload_too_large", detail)
        raise APIError(502, "upstream_error", f"TorchServe answered HTTP {status}: {detail}")

    async def describe(self, model: str) -> list[dict[str, Any]] | None:
        """Management API status of `model` (None when not registered)."""
        response = await self._send("GET", f"{self.settings.torchserve_management_url}/models/{model}", "management")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._unavailable("upstream_error", f"TorchServe management answered HTTP {response.status_code}")
        return orjson.loads(response.content)

    async def describe_all(self, models: list[str]) -> dict[str, list[dict[str, Any]] | None]:
        answers = await asyncio.gather(*(self.describe(m) for m in models))
        return dict(zip(models, answers, strict=True))


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
    return str(body)[:300]
