"""Objects shared by the routes, created once per app in its lifespan and handed out through Depends.

The providers are `async def` on purpose: FastAPI runs plain `def` dependencies in its thread pool, a
thread hop on every request for what is an attribute lookup.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from contract.catalog import TaskSpec
from gateway.coalesce import Coalescer
from gateway.explain_slots import ExplainSlots
from gateway.fairshare import FairShare
from gateway.jobstore import JobStore
from gateway.metrics import GatewayMetrics
from gateway.settings import Settings
from gateway.upstream import TorchServeClient


async def get_client(request: Request) -> TorchServeClient:
    return request.app.state.torchserve


async def get_catalog(request: Request) -> dict[str, TaskSpec]:
    """The tasks routed now: the catalog's and those discovered on the upstreams (`gateway.tasks`)."""
    return request.app.state.tasks.tasks


async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_metrics(request: Request) -> GatewayMetrics:
    return request.app.state.metrics


async def get_coalescer(request: Request) -> Coalescer | None:
    return request.app.state.coalescer


async def get_jobs(request: Request) -> JobStore:
    return request.app.state.jobs


async def get_fair_share(request: Request) -> FairShare:
    return request.app.state.fair_share


async def get_explain_slots(request: Request) -> ExplainSlots:
    return request.app.state.explain_slots


Client = Annotated[TorchServeClient, Depends(get_client)]
Catalog = Annotated[dict[str, TaskSpec], Depends(get_catalog)]
AppSettings = Annotated[Settings, Depends(get_app_settings)]
Metrics = Annotated[GatewayMetrics, Depends(get_metrics)]
Slots = Annotated[ExplainSlots, Depends(get_explain_slots)]
Coalesce = Annotated[Coalescer | None, Depends(get_coalescer)]
Share = Annotated[FairShare, Depends(get_fair_share)]
Jobs = Annotated[JobStore, Depends(get_jobs)]
