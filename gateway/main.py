"""The gateway application factory (`uvicorn gateway.main:create_app --factory`)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gateway.apikeys import KeyStore
from gateway.errors import install_error_handlers
from gateway.guard import Guard
from gateway.limits import RequestLimits
from gateway.metrics import GatewayMetrics
from gateway.observe import Observe, RequestIdFilter
from gateway.ratelimit import RateLimiter
from gateway.responses import OrjsonResponse
from gateway.routers import health, predict
from gateway.settings import Settings, get_settings
from gateway.upstream import TorchServeClient
from modelops.catalog import load_catalog
from modelops.logs import configure_logging


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    catalog = load_catalog(settings.catalog_path)
    metrics = GatewayMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One pooled client for the app's lifetime: connections to TorchServe are reused across requests.
        app.state.torchserve = TorchServeClient(settings, metrics)
        app.state.torchserve.start_health_checks()
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
    )
    app.state.settings = settings
    app.state.catalog = catalog
    app.state.metrics = metrics
    # Added last = outermost. Observe sees every request (refused ones too); the guard refuses before the body
    # is read; the size limits refuse before anything parses it.
    image_routes = {spec.route: settings.max_image_body_bytes for spec in catalog.values() if spec.kind == "image"}
    app.add_middleware(
        RequestLimits,
        max_bytes=settings.max_body_bytes,
        max_headers=settings.max_headers,
        max_header_bytes=settings.max_header_bytes,
        per_path=image_routes,
    )
    limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst) if settings.rate_limit_per_s else None
    keys = KeyStore(settings.api_keys, settings.api_keys_file)
    task_routes = {spec.route: spec.task for spec in catalog.values()}
    app.add_middleware(Guard, keys=keys, limiter=limiter, task_routes=task_routes, metrics=metrics)
    app.add_middleware(Observe, metrics=metrics)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(predict.build_router(catalog, settings))
    configure_logging()
    for handler in logging.getLogger().handlers:
        handler.addFilter(RequestIdFilter())
    return app
