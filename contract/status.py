"""What the gateway answers about itself: the tasks it routes with the version serving each (`GET /v1/models`)
and whether every model can answer (`GET /readyz`). Here rather than in the gateway because the UI reads
both answers too, into these same models.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class UpstreamReadiness(BaseModel):
    ready: bool = Field(description="every catalog model has a READY worker on this TorchServe")
    reason: str | None = Field(default=None, description="why this TorchServe could not be asked")


class LoadedVersion(BaseModel):
    """What the first TorchServe that has a model ready (else loaded at all) says of its default version; a
    ping-only upstream (a KServe predictor) says only `ready`."""

    ready: bool
    version: str | None
    ready_workers: int | None
    workers: int | None
    batch_size: int | None
    max_batch_delay_ms: int | None


class TaskScaling(BaseModel):
    """Where a task stands with the gateway's scaler: workers started on demand, none while idle."""

    state: str = Field(
        description="`warm` (workers running), `starting` (a worker starting for a call) or `cold` "
        "(scaled to zero: the next call starts one)"
    )
    workers: int = Field(description="workers running or starting")
    min_workers: int = Field(description="the fewest it keeps; 0: scaled to zero when idle")
    max_workers: int = Field(description="the most it gets under load")
    last_used: str = Field(
        description="when a call of it last went through this gateway, or through another one as TorchServe "
        "counted it (ISO 8601, UTC); when the gateway first saw the task if never since"
    )
    idle_s: float = Field(description="seconds since then")
    memory_mb: float = Field(
        description="memory its workers hold now, resident, MB: read from /proc where TorchServe runs on the "
        "gateway's host, else TorchServe's figure, else the estimate (GATEWAY_WORKER_MEMORY_ESTIMATE_MB)"
    )
    worker_memory_mb: float = Field(description="one worker's memory, measured or estimated, MB")


class TaskEntry(BaseModel):
    task: str
    kind: str = Field(description="`text` or `image`: which body the route takes")
    route: str
    model_name: str
    description: str
    labels: list[str]
    max_chars: int | None = Field(description="a text task's limit per text")
    loaded: LoadedVersion | None = Field(description="None while no TorchServe has the model")
    scaling: TaskScaling | None = Field(
        default=None, description="its workers by demand (None when the gateway does not scale them)"
    )
    training: dict[str, Any] | None = Field(
        description="a better version being built for the task (`make run`'s background training): its recipe, "
        "stage and progress (`contract/progress.py`)"
    )


class UpstreamState(BaseModel):
    name: str
    reachable: bool
    reason: str | None = Field(description="why this TorchServe could not be asked")


class ModelList(BaseModel):
    models: list[TaskEntry]
    torchserve: str = Field(description="`reachable`, or every upstream's problem")
    upstreams: list[UpstreamState]


class Readiness(BaseModel):
    status: str = Field(description="`ready` or `not_ready`")
    models: dict[str, bool] = Field(
        description="per model: has a READY worker on at least one upstream, or is registered and scaled to zero "
        "(its next call starts one)"
    )
    upstreams: dict[str, UpstreamReadiness] = Field(description="per configured TorchServe, by name")
    reason: str | None = Field(default=None, description="why not ready")
