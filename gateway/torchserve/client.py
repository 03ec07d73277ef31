"""One TorchServe upstream: sending to it with its current key, pinging it, and asking its management API.

Keys come from each TorchServe's own key file and are re-read when the file changes or when TorchServe rejects
a key (keys expire and get rotated), so a key rotation needs no gateway restart.

Explanations travel the same way, to TorchServe's explanations API (`/explanations/{model}`), and a model's card
comes from its management API's customized describe (`GET /models/{model}?customized=true`), which asks a
worker of the loaded version.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import orjson

from contract.logs import log_event
from contract.torchserve import TorchServeError, bearer
from gateway.metrics import GatewayMetrics
from gateway.settings import UpstreamSettings
from gateway.torchserve import logger
from gateway.torchserve.errors import Unreachable, UpstreamTimeout
from gateway.torchserve.keys import KeyFile

_KEY_REJECTED = "InvalidKeyException"
# `/ping` says "Healthy" unless a model's workers have kept failing past their retry time.
_HEALTHY = "Healthy"
PREDICTIONS = "predictions"
EXPLANATIONS = "explanations"


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
        except (Unreachable, UpstreamTimeout) as exc:
            self.mark(False, str(exc))
            return False
        status = answer_message(response) if response.status_code != 200 else _ping_status(response)
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


def _ping_status(response: httpx.Response) -> str:
    try:
        return str(orjson.loads(response.content).get("status"))
    except (orjson.JSONDecodeError, AttributeError):
        return response.text.strip()[:100]


def answer_message(response: httpx.Response) -> str:
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
