"""The gateway application factory (`uvicorn gateway.main:create_app --factory`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gateway.access_log import AccessLog
from gateway.errors import install_error_handlers
from gateway.limits import BodySizeLimit
from gateway.responses import OrjsonResponse
from gateway.routers import health, predict
from gateway.settings import Settings, get_settings
from gateway.upstream import TorchServeClient
from modelops.catalog import load_catalog
from modelops.logs import configure_logging


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    catalog = load_catalog(settings.catalog_path)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One pooled client for the app's lifetime: connections to TorchServe are reused across requests.
        app.state.torchserve = TorchServeClient(settings)
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
    # Added last = outermost: the access log also records requests the body limit rejects.
    image_routes = {spec.route: settings.max_image_body_bytes for spec in catalog.values() if spec.kind == "image"}
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes, per_path=image_routes)
    app.add_middleware(AccessLog)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(predict.build_router(catalog, settings))
    configure_logging()
    return app
