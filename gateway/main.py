"""The gateway application factory (`uvicorn gateway.main:create_app --factory`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from contract.catalog import served_catalog
from contract.logs import configure_logging
from gateway.apikeys import KeyStore
from gateway.coalesce import Coalescer
from gateway.errors import install_error_handlers
from gateway.explain_slots import ExplainSlots
from gateway.fairshare import FairShare
from gateway.guard import API_KEY_HEADER, OPEN_PATHS, Guard
from gateway.jobstore import JobStore
from gateway.limits import RequestLimits
from gateway.metrics import GatewayMetrics
from gateway.observe import Observe, RequestIdFilter
from gateway.ratelimit import RateLimiter
from gateway.responses import OrjsonResponse
from gateway.routers import health, jobs, operation_id, predict
from gateway.settings import Settings, get_settings
from gateway.tasks import TaskSet
from gateway.upstream import TorchServeClient

API_KEY_SCHEME = "ApiKey"


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


def create_app(settings: Settings | None = None, upstream_transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """The app; `upstream_transport` replaces its HTTP transport to TorchServe (tests pass `httpx.MockTransport`)."""
    settings = settings or get_settings()
    metrics = GatewayMetrics()
    # a task route's own body limit, by input kind: image uploads are larger than texts
    body_limits = {"image": settings.max_image_body_bytes}
    # a bulk job's file, with room for the multipart envelope around it
    static_limits = {"/v1/jobs": settings.job_max_bytes + 64 * 1024}
    tasks = TaskSet(served_catalog(settings.catalog_path), lambda spec: body_limits.get(spec.kind), static_limits)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One pooled client for the app's lifetime: connections to TorchServe are reused across requests.
        app.state.torchserve = TorchServeClient(settings, metrics, upstream_transport, lambda: tasks.models)
        app.state.torchserve.start()
        window = settings.coalesce_window_ms / 1000
        app.state.coalescer = Coalescer(app.state.torchserve, window) if window else None
        watcher = asyncio.create_task(
            tasks.watch(app.state.torchserve, settings.task_refresh_interval_s), name="task-discovery"
        )
        try:
            yield
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
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
    app.state.tasks = tasks
    app.state.metrics = metrics
    app.state.explain_slots = ExplainSlots(settings.explain_concurrency, settings.retry_after_s, metrics)
    app.state.fair_share = FairShare()
    app.state.jobs = JobStore()
    # Added last = outermost. Observe sees every request (refused ones too); the guard refuses before the body
    # is read; the size limits refuse before anything parses it. Both read the task set's live mappings.
    app.add_middleware(
        RequestLimits,
        max_bytes=settings.max_body_bytes,
        max_headers=settings.max_headers,
        max_header_bytes=settings.max_header_bytes,
        per_path=tasks.body_limits,
    )
    limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst) if settings.rate_limit_per_s else None
    keys = KeyStore(settings.api_keys, settings.api_keys_file)
    app.add_middleware(Guard, keys=keys, limiter=limiter, task_routes=tasks.paths, metrics=metrics)
    app.add_middleware(Observe, metrics=metrics)
    origins = [origin.strip() for origin in settings.cors_origins.split(",") if origin.strip()]
    if origins:  # outermost: a browser's preflight (no API key, by design) is answered before the guard
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Content-Type", "X-API-Key", "X-Request-ID", "X-Model-Version", "X-Priority"],
            expose_headers=["X-Request-ID", "Retry-After", "Location"],
            max_age=600,
        )
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(jobs.router)
    installed: list[Any] = []

    def install_task_routes() -> None:
        """Replace the task routes with the current set's (at start, and whenever the set changes); the OpenAPI
        document is rebuilt on its next read."""
        routes = predict.build_router(tasks.tasks, settings).routes
        app.router.routes[:] = [route for route in app.router.routes if route not in installed] + routes
        installed[:] = routes
        app.openapi_schema = None

    install_task_routes()
    tasks.on_change.append(install_task_routes)

    def openapi() -> dict[str, Any]:
        document = app.openapi_schema
        if document is None:  # built on first use after a change: FastAPI.openapi keeps it in openapi_schema
            document = FastAPI.openapi(app)
            _complete(document, predict.openapi_components(tasks.tasks, settings), keys.enabled)
            jobs.document_submission(document, tasks.tasks, settings)
        return document

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the document
    configure_logging()
    for handler in logging.getLogger().handlers:
        handler.addFilter(RequestIdFilter())
    return app
