"""Liveness, readiness and the model listing."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from gateway.dependencies import AppSettings, Catalog, Client, Metrics
from gateway.errors import APIError
from gateway.metrics import CONTENT_TYPE
from gateway.responses import OrjsonResponse
from gateway.schemas import GUARD_ERRORS, Readiness
from gateway.upstream import TorchServeClient
from modelops.catalog import TaskSpec
from modelops.torchserve import ready_workers

router = APIRouter(tags=["operations"], responses=GUARD_ERRORS)


@router.get("/healthz", summary="The gateway process is up (says nothing about the models)")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/metrics", include_in_schema=False)
async def metrics(registry: Metrics) -> Response:
    """Prometheus text format; TorchServe's own metrics are on its metrics port (8082)."""
    return Response(registry.render(), media_type=CONTENT_TYPE)


def _loaded(description: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    if not description:
        return None
    default = description[0]
    return {
        "version": default.get("modelVersion"),
        "ready_workers": ready_workers(description),
        "workers": len(default.get("workers", [])),
        "batch_size": default.get("batchSize"),
        "max_batch_delay_ms": default.get("maxBatchDelay"),
    }


async def _status(client: TorchServeClient, catalog: dict[str, TaskSpec]) -> tuple[dict[str, Any], str | None]:
    """Per model: what TorchServe has loaded (or None), plus why TorchServe could not be asked, if so."""
    try:
        described = await client.describe_all([spec.model_name for spec in catalog.values()])
    except APIError as exc:
        return {spec.model_name: None for spec in catalog.values()}, exc.message
    return {name: _loaded(d) for name, d in described.items()}, None


@router.get(
    "/readyz",
    summary="Every catalog model has a READY worker in TorchServe",
    responses={
        200: {"model": Readiness, "description": "ready"},
        503: {"model": Readiness, "description": "not ready; `reason` says why (Retry-After set)"},
    },
)
async def readyz(client: Client, catalog: Catalog, settings: AppSettings) -> OrjsonResponse:
    loaded, problem = await _status(client, catalog)
    models = {name: bool(info and info["ready_workers"] > 0) for name, info in loaded.items()}
    ready = problem is None and all(models.values())
    body: dict[str, Any] = {"status": "ready" if ready else "not_ready", "models": models}
    if problem:
        body["reason"] = problem
    elif not ready:
        body["reason"] = "not ready: " + ", ".join(name for name, ok in models.items() if not ok)
    headers = None if ready else {"Retry-After": str(settings.retry_after_s)}
    return OrjsonResponse(body, status_code=200 if ready else 503, headers=headers)


@router.get("/v1/models", summary="The catalog's tasks and the model version TorchServe serves for each")
async def list_models(client: Client, catalog: Catalog) -> dict[str, Any]:
    loaded, problem = await _status(client, catalog)
    models = [
        {
            "task": spec.task,
            "kind": spec.kind,
            "route": spec.route,
            "model_name": spec.model_name,
            "description": spec.description,
            "labels": list(spec.labels),
            "max_chars": spec.max_chars,
            "loaded": loaded[spec.model_name],
        }
        for spec in catalog.values()
    ]
    return {"models": models, "torchserve": "reachable" if problem is None else problem}
