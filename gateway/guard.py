"""Who may call: API keys (401 without a valid one, 403 for a task the key is not granted) and per-caller
rate limits (429). Runs before routing and body parsing, so a refused request costs no work.

`/healthz` stays open: load balancers and orchestrators probe it without credentials. Everything else,
including `/metrics`, `/readyz` and the API docs, needs a key once keys are configured.
"""

from __future__ import annotations

import math

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.apikeys import KeyStore
from gateway.errors import error_response
from gateway.metrics import GatewayMetrics
from gateway.observe import KEY_NAME_SCOPE, KEY_SCOPE
from gateway.ratelimit import RateLimiter

OPEN_PATHS = frozenset({"/healthz"})
API_KEY_HEADER = "X-API-Key"


class Guard:
    def __init__(
        self,
        app: ASGIApp,
        keys: KeyStore,
        limiter: RateLimiter | None,
        task_routes: dict[str, str],
        metrics: GatewayMetrics,
    ) -> None:
        self.app = app
        self.keys = keys
        self.limiter = limiter
        self.task_routes = task_routes
        self.metrics = metrics

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, status: int, code: str, message: str, **headers: str
    ) -> None:
        self.metrics.rejected.labels(code).inc()
        response = error_response(status, code, message)
        response.headers.update(headers)
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        caller = scope["client"][0] if scope.get("client") else "unknown"
        if self.keys.enabled:
            presented = next((v for k, v in scope["headers"] if k == b"x-api-key"), None)
            challenge = {"WWW-Authenticate": f'ApiKey header="{API_KEY_HEADER}"'}
            if not presented:
                await self._refuse(
                    scope,
                    receive,
                    send,
                    401,
                    "missing_api_key",
                    f"send your API key in the {API_KEY_HEADER} header",
                    **challenge,
                )
                return
            key = self.keys.match(presented.decode("latin-1"))
            if key is None:
                message = "the API key is not valid"
                await self._refuse(scope, receive, send, 401, "invalid_api_key", message, **challenge)
                return
            task = self.task_routes.get(scope["path"])
            if task is not None and not key.allows(task):
                await self._refuse(
                    scope, receive, send, 403, "forbidden", f"the API key '{key.name}' is not granted the task '{task}'"
                )
                return
            caller = key.name
            scope[KEY_NAME_SCOPE] = key.name
            scope[KEY_SCOPE] = key
        if self.limiter is not None:
            wait = self.limiter.take(caller)
            if wait > 0:
                retry_after = max(1, math.ceil(wait))
                limit = f"{self.limiter.rate:g} requests/s (burst {self.limiter.burst:g})"
                message = f"rate limit of {limit} exceeded; retry in {retry_after}s"
                await self._refuse(
                    scope, receive, send, 429, "rate_limited", message, **{"Retry-After": str(retry_after)}
                )
                return
        await self.app(scope, receive, send)
