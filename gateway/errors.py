"""One error shape for every failure: `{"error": {"code", "message", ...}}` with the right status code.

Clients branch on `code`; people read `message`, which names the field and the limit where there is one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match

from gateway.responses import OrjsonResponse


class APIError(Exception):
    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.extra = extra


def error_response(
    status: int, code: str, message: str, retry_after: int | None = None, **extra: Any
) -> OrjsonResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return OrjsonResponse(
        status_code=status, content={"error": {"code": code, "message": message, **extra}}, headers=headers
    )


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


def describe_validation_errors(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Pydantic errors as `{field, message}`, the field as a dotted path into the JSON body."""
    return [{"field": _field_path(tuple(e.get("loc", ()))), "message": e.get("msg", "invalid")} for e in errors]


def allowed_methods(request: Request) -> str:
    """The `Allow` header of a 405 (RFC 9110): every method some route serves at this path.

    Starlette's own header names only the first route whose path matched, and a path such as `/v1/jobs` has
    one route per method, so the header is gathered from all of them."""
    scope = {**request.scope, "method": "GET"}  # any method: a partial match is a path match
    methods: set[str] = set()
    for route in _leaves(request.app.router.routes):
        if route.matches(scope)[0] != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


def _leaves(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """The routes themselves, inside the wrappers FastAPI puts around an included router (no prefixes here)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        yield from _leaves(inner.routes) if inner is not None else (route,)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> OrjsonResponse:
        return error_response(exc.status, exc.code, exc.message, exc.retry_after, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> OrjsonResponse:
        details = describe_validation_errors(list(exc.errors()))
        message = "; ".join(f"{d['field']}: {d['message']}" for d in details)
        return error_response(422, "validation_error", message, details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> OrjsonResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        response = error_response(exc.status_code, code, str(exc.detail))
        if exc.status_code == 405:
            response.headers["Allow"] = allowed_methods(request)
        return response

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> OrjsonResponse:
        return error_response(500, "internal_error", f"unexpected {type(exc).__name__}; see the gateway log")
