"""Request size limits, enforced before any parsing: too many or too large headers get 431, oversize bodies
get 413 without being read in full.

uvicorn's HTTP parser only bounds a header block that arrives in pieces; one sent in a single packet of any
size reaches the app, so the gateway counts headers itself.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import error_response


class RequestLimits:
    """Pure ASGI middleware: counts headers, checks Content-Length up front and counts chunked bodies as they
    arrive. `per_path` gives routes their own body limit (image uploads are larger than texts)."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        max_headers: int,
        max_header_bytes: int,
        per_path: dict[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_headers = max_headers
        self.max_header_bytes = max_header_bytes
        self.per_path = per_path or {}

    def _header_problem(self, scope: Scope) -> str | None:
        headers = scope["headers"]
        if len(headers) > self.max_headers:
            return f"{len(headers)} headers; the limit is {self.max_headers}"
        size = sum(len(name) + len(value) for name, value in headers)
        if size > self.max_header_bytes:
            return f"headers total {size} bytes; the limit is {self.max_header_bytes} bytes"
        return None

    async def _reject(self, scope: Scope, receive: Receive, send: Send, size: str, limit: int) -> None:
        response = error_response(
            413,
            "payload_too_large",
            f"request body is {size} bytes; the limit is {limit} bytes",
            limit_bytes=limit,
        )
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = self._header_problem(scope)
        if problem:
            await error_response(431, "headers_too_large", problem)(scope, receive, send)
            return
        limit = self.per_path.get(scope["path"], self.max_bytes)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._reject(scope, receive, send, declared.decode(), limit)
            return
        buffered: list[Message] = []
        received = 0
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break
            received += len(message.get("body", b""))
            if received > limit:
                await self._reject(scope, receive, send, f"more than {limit}", limit)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)
