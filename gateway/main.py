"""The gateway application factory (`uvicorn gateway.main:create_app --factory`)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from contract.catalog import load_catalog
from contract.logs import configure_logging
from gateway.apikeys import KeyStore
from gateway.coalesce import Coalescer
from gateway.errors import install_error_handlers
from gateway.explain_slots import ExplainSlots
from gateway.guard import API_KEY_HEADER, OPEN_PATHS, Guard
from gateway.limits import RequestLimits
from gateway.metrics import GatewayMetrics
from gateway.observe import Observe, RequestIdFilter
from gateway.ratelimit import RateLimiter
from gateway.responses import OrjsonResponse
from gateway.routers import health, predict
from gateway.settings import Settings, get_settings
from gateway.upstream import TorchServeClient

API_KEY_SCHEME = "ApiKey"


def operation_id(route: APIRoute) -> str:
    """OpenAPI operation ids are the route names (`classify_sentiment`, `list_models`): generated clients name
    their functions after them, so they are kept short instead of FastAPI's `name_path_method` default."""
    return route.name


def _complete(document: dict[str, Any], components: dict[str, Any], keys_required: bool) -> None:
    """Add to FastAPI's OpenAPI document the request-body schemas the routes refer to, and the API-key scheme
    on every operation the guard (`gateway.guard`) checks: required when this gateway has keys, optional when
    it has none (it is open then), never on the open paths."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    clashes = sorted(name for name in components if name in schemas and schemas[name] != components[name])
    if clashes:
        raise RuntimeError(f"OpenAPI component name(s) used twice: {', '.join(clashes)}")
    schemas.update(components)
    document["components"]["securitySchemes"] = {
        API_KEY_SCHEME: {
            "type": "apiKey",
            "in": "header",
            "name": API_KEY_HEADER,
            "description": "Needed on every route but /healthz when the gateway has keys (GATEWAY_API_KEYS or "
            "GATEWAY_API_KEYS_FILE); a gateway without keys ignores it. 401 without a valid key, 403 for a "
            "task the key is not granted.",
        }
    }
    for path, operations in document["paths"].items():
        for operation in operations.values():
            if path in OPEN_PATHS:
                operation["security"] = []
            else:
                operation["security"] = [{API_KEY_SCHEME: []}] if keys_required else [{API_KEY_SCHEME: []}, {}]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    catalog = load_catalog(settings.catalog_path)
    metrics = GatewayMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One pooled client for the app's lifetime: connections to TorchServe are reused across requests.
        app.state.torchserve = TorchServeClient(settings, metrics)
        app.state.torchserve.start_health_checks()
        window = settings.coalesce_window_ms / 1000
        app.state.coalescer = Coalescer(app.state.torchserve, window) if window else None
        try:
            yield
        finally:
            await app.state.torchserve.aclose()

    app = FastAPI(
        title="Multi-task classification API",
        version="1.0.0",
        description="Sentiment of movie reviews, disaster tweets and human actions in photos, served by TorchServe.",
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
        generate_unique_id_function=operation_id,
    )
    app.state.settings = settings
    app.state.catalog = catalog
    app.state.metrics = metrics
    app.state.explain_slots = ExplainSlots(settings.explain_concurrency, settings.retry_after_s, metrics)
    # Added last = outermost. Observe sees every request (refused ones too); the guard refuses before the body
    # is read; the size limits refuse before anything parses it.
    image_routes = {
        path: settings.max_image_body_bytes
        for spec in catalog.values()
        if spec.kind == "image"
        for path in (spec.route, predict.explain_path(spec))
    }
    app.add_middleware(
        RequestLimits,
        max_bytes=settings.max_body_bytes,
        max_headers=settings.max_headers,
        max_header_bytes=settings.max_header_bytes,
        per_path=image_routes,
    )
    limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst) if settings.rate_limit_per_s else None
    keys = KeyStore(settings.api_keys, settings.api_keys_file)
    task_routes = {path: spec.task for spec in catalog.values() for path in (spec.route, predict.explain_path(spec))}
    app.add_middleware(Guard, keys=keys, limiter=limiter, task_routes=task_routes, metrics=metrics)
    app.add_middleware(Observe, metrics=metrics)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(predict.build_router(catalog, settings))
    components = predict.openapi_components(catalog, settings)

    def openapi() -> dict[str, Any]:
        document = app.openapi_schema
        if document is None:  # built once, on first use: FastAPI.openapi keeps what it builds in openapi_schema
            document = FastAPI.openapi(app)
            _complete(document, components, keys.enabled)
        return document

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the document
    configure_logging()
    for handler in logging.getLogger().handlers:
        handler.addFilter(RequestIdFilter())
    return app
