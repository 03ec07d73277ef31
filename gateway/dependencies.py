"""Objects shared by the routes, created once per app in its lifespan and handed out through Depends."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gateway.settings import Settings
from gateway.upstream import TorchServeClient
from modelops.catalog import TaskSpec


def get_client(request: Request) -> TorchServeClient:
    return request.app.state.torchserve


def get_catalog(request: Request) -> dict[str, TaskSpec]:
    return request.app.state.catalog


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


Client = Annotated[TorchServeClient, Depends(get_client)]
Catalog = Annotated[dict[str, TaskSpec], Depends(get_catalog)]
AppSettings = Annotated[Settings, Depends(get_app_settings)]
