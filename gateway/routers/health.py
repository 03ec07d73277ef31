"""Liveness, readiness, the model listing and each model's card."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from contract.catalog import TaskSpec, TextTask
from contract.progress import read_progress
from contract.status import LoadedVersion, ModelList, Readiness, TaskEntry, UpstreamReadiness, UpstreamState
from gateway.dependencies import AppSettings, Catalog, Client, Metrics
from gateway.errors import APIError
from gateway.metrics import CONTENT_TYPE
from gateway.responses import OrjsonResponse
from gateway.schemas.error_docs import GUARD_ERRORS, ErrorResponse
from gateway.schemas.responses import ModelCardAnswer
from gateway.torchserve.descriptions import UpstreamStatus
from gateway.upstream import TorchServeClient

router = APIRouter(tags=["operations"], responses=GUARD_ERRORS)


@router.get("/healthz", summary="The gateway process is up (says nothing about the models)")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/metrics", include_in_schema=False)
async def metrics(registry: Metrics) -> Response:
    """Prometheus text format; TorchServe's own metrics are on its metrics port (8082)."""
    return Response(registry.render(), media_type=CONTENT_TYPE)


async def _statuses(client: TorchServeClient, catalog: dict[str, TaskSpec]) -> list[UpstreamStatus]:
    return await client.status([spec.model_name for spec in catalog.values()])


def _problems(statuses: list[UpstreamStatus]) -> str | None:
    problems = [f"{s.name}: {s.problem}" for s in statuses if s.problem]
    return "; ".join(problems) or None


@router.get(
    "/readyz",
    summary="Every catalog model has a READY worker on at least one TorchServe upstream",
    responses={
        200: {"model": Readiness, "description": "ready"},
        503: {"model": Readiness, "description": "not ready; `reason` says why (Retry-After set)"},
    },
)
async def readyz(client: Client, catalog: Catalog, settings: AppSettings) -> OrjsonResponse:
    statuses = await _statuses(client, catalog)
    names = [spec.model_name for spec in catalog.values()]
    models = {name: any(s.ready(name) for s in statuses) or _cold(client, statuses, name) for name in names}
    ready = all(models.values())
    body = Readiness(
        status="ready" if ready else "not_ready",
        models=models,
        upstreams={
            s.name: UpstreamReadiness(
                ready=all(s.ready(name) or _cold(client, [s], name) for name in names), reason=s.problem
            )
            for s in statuses
        },
    )
    if not ready:
        missing = ", ".join(name for name, ok in models.items() if not ok)
        body.reason = f"not ready: {missing}" + (f" ({problem})" if (problem := _problems(statuses)) else "")
    headers = None if ready else {"Retry-After": str(settings.retry_after_s)}
    # `reason` only when not ready; an upstream's `reason` always (null when it could be asked)
    content = body.model_dump(exclude={"reason"} if ready else set())
    return OrjsonResponse(content, status_code=200 if ready else 503, headers=headers)


def _cold(client: TorchServeClient, statuses: list[UpstreamStatus], model: str) -> bool:
    """Registered and scaled to zero on purpose: its next call starts a worker, so it counts as ready."""
    registered = any(s.models and s.models.get(model) for s in statuses)
    return registered and client.scaler.enabled and client.scaler.state(model) != "warm"


def _best(statuses: list[UpstreamStatus], model: str) -> LoadedVersion | None:
    """What the first upstream that has `model` ready (else loaded at all) reports about it."""
    loaded = [info for s in statuses if s.models and (info := s.models.get(model))]
    return next((info for info in loaded if info.ready), loaded[0] if loaded else None)


@router.get("/v1/models", summary="The tasks routed (the catalog's and those added) and the version serving each")
async def list_models(client: Client, catalog: Catalog, settings: AppSettings) -> ModelList:
    statuses = await _statuses(client, catalog)
    problem = _problems(statuses)
    training = read_progress(settings.training_status_dir) if settings.training_status_dir else {}
    models = [
        TaskEntry(
            task=spec.task,
            kind=spec.kind,
            route=spec.route,
            model_name=spec.model_name,
            description=spec.description,
            labels=list(spec.labels),
            max_chars=spec.text.max_chars if isinstance(spec, TextTask) else None,
            loaded=_best(statuses, spec.model_name),
            scaling=client.scaler.scaling(spec.model_name),
            training=training.get(spec.task),
        )
        for spec in catalog.values()
    ]
    upstreams = [UpstreamState(name=s.name, reachable=s.problem is None, reason=s.problem) for s in statuses]
    return ModelList(models=models, torchserve="reachable" if problem is None else problem, upstreams=upstreams)


@router.get(
    "/v1/models/{task}",
    summary="The model card of the version serving a task, as its TorchServe worker loaded it",
    responses={
        200: {"model": ModelCardAnswer, "description": "the card"},
        404: {"model": ErrorResponse, "description": "no such task"},
        503: {"model": ErrorResponse, "description": "no TorchServe could describe the model (Retry-After set)"},
    },
)
async def model_card(task: str, client: Client, catalog: Catalog) -> OrjsonResponse:
    """Read from the archive the model server loaded (TorchServe's customized describe asks a worker), not from
    the catalog: after a rollout it is the new version's card. Upstreams without a management API (a KServe
    predictor) cannot be asked, and answer 503."""
    spec = catalog.get(task)
    if spec is None:
        raise APIError(404, "unknown_task", f"no task '{task}'; the tasks are {', '.join(catalog)}")
    described = await client.described(spec.model_name)
    return OrjsonResponse(
        {"task": task, "model_name": spec.model_name, "version": described.version, "card": described.card}
    )
