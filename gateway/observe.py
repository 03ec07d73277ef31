"""Per-request bookkeeping in one pass: the request id, the access log line and the request metrics.

The request id is taken from `X-Request-ID` when the caller sends a sane one (so a client's own trace id
carries through), else generated; it is echoed in the response, attached to every log line written while the
request runs, and sent on to TorchServe, whose handler logs it with the model batch the request rode in.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contract.logs import log_event
from gateway.metrics import UNMATCHED, GatewayMetrics

logger = logging.getLogger("gateway.access")

REQUEST_ID_HEADER = "X-Request-ID"
# Echoed into logs and headers: printable, bounded, no separators a log parser or header could trip on.
_SANE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
request_id: ContextVar[str] = ContextVar("request_id", default="-")
# Set by the API-key guard: the *name* of the caller's key (never the key), for the access log.
KEY_NAME_SCOPE = "gateway.api_key_name"
# The caller's key itself (`gateway.apikeys.ApiKey`), for routes that check a grant the guard cannot see from the
# path (a bulk job's task).
KEY_SCOPE = "gateway.api_key"


class RequestIdFilter(logging.Filter):
    """Adds the current request's id to every log record written inside a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = request_id.get()
        if rid != "-" and not hasattr(record, "request_id"):
            record.request_id = rid
        return True


def _incoming_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id" and _SANE_ID.fullmatch(value):
            return value.decode()
    return uuid.uuid4().hex


class Observe:
    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = _incoming_id(scope)
        token = request_id.set(rid)
        status = 500  # if the app raises before answering, the server answers 500
        header = (b"x-request-id", rid.encode())

        async def tagged(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, tagged)
        finally:
            seconds = time.perf_counter() - started
            self.metrics.in_flight.dec()
            route = scope.get("route")
            template = getattr(route, "path", UNMATCHED)
            self.metrics.requests.labels(template, scope["method"], str(status)).inc()
            self.metrics.latency.labels(template).observe(seconds)
            key_name = scope.get(KEY_NAME_SCOPE)
            log_event(
                logger,
                "request",
                logging.WARNING if status >= 500 else logging.INFO,
                method=scope["method"],
                path=scope["path"],
                status=status,
                ms=round(seconds * 1000, 1),
                **({"api_key": key_name} if key_name else {}),
            )
            request_id.reset(token)
