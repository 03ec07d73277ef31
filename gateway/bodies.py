"""JSON request bodies, parsed and validated in one step by pydantic-core.

The routes read their bodies themselves rather than through FastAPI's body parameters: FastAPI answers an
invalid UTF-8 body or a deeply nested one with a bare 400 "There was an error parsing the body" and takes
any Content-Type as JSON. Here a wrong Content-Type is a 415 naming the one accepted, and every parse or
validation failure is a 422 naming the field (`body` for the document itself).
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from gateway.errors import APIError

JSON = "application/json"
Model = TypeVar("Model", bound=BaseModel)


def is_json(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith(JSON)


async def parse_json(request: Request, model: type[Model]) -> Model:
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False, include_context=False)]
        ) from None


async def read_json(request: Request, model: type[Model]) -> Model:
    """The body of a JSON-only route: 415 unless it says it is JSON, then `parse_json`."""
    if not is_json(request):
        sent = request.headers.get("content-type") or "no Content-Type"
        raise APIError(415, "unsupported_media_type", f"send Content-Type: {JSON} (got {sent})")
    return await parse_json(request, model)


def json_body_schema(schema: dict[str, Any], examples: dict[str, Any] | None = None) -> dict[str, Any]:
    """OpenAPI `requestBody` for a route that reads its JSON body itself, with named `examples` if given."""
    media: dict[str, Any] = {"schema": schema, **({"examples": examples} if examples else {})}
    return {"requestBody": {"required": True, "content": {JSON: media}}}
