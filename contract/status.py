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


class TaskEntry(BaseModel):
    task: str
    kind: str = Field(description="`text` or `image`: which body the route takes")
    route: str
    model_name: str
    description: str
    labels: list[str]
    max_chars: int | None = Field(description="a text task's limit per text")
    loaded: LoadedVersion | None = Field(description="None while no TorchServe has the model")
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
    models: dict[str, bool] = Field(description="per model: has a READY worker on at least one upstream")
    upstreams: dict[str, UpstreamReadiness] = Field(description="per configured TorchServe, by name")
    reason: str | None = Field(default=None, description="why not ready")
