"""After `task add` or `task remove` on a machine running the local stack: apply the change now and wait until
the gateway routes the task (or no longer does), instead of leaving it to the next pass of the sync loop."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from contract.catalog import TaskSpec
from modelops.local import torchserve
from modelops.local.config import StackConfig
from modelops.local.services import running_pid
from modelops.store.s3 import ModelStore
from modelops.tasks import TaskError


def _answers(entry: dict[str, Any]) -> bool:
    """A `/v1/models` entry of a task its gateway can answer: a worker is ready, or it is registered and scaled
    to zero (its next call starts one)."""
    loaded = entry.get("loaded") or {}
    return bool(loaded.get("ready") or (loaded and (entry.get("scaling") or {}).get("state") == "cold"))


def apply_locally(
    cfg: StackConfig,
    catalog: dict[str, TaskSpec],
    store: ModelStore,
    task: str,
    routed: bool,
    say: Callable[[str], None],
    api_key: str | None = None,
    timeout_s: float = 300.0,
) -> bool:
    """Sync this machine's TorchServe now, then wait until its gateway lists `task` with a ready worker
    (`routed`) or without it. False when no local stack runs (a deployment's own syncs apply it then). A gateway
    with API keys needs `api_key` to list its tasks; one it refuses ends the wait at once."""
    if not running_pid(cfg, "torchserve"):
        say(
            "no local stack runs here: each host's sync applies it on its next pass, and the gateways follow "
            "(`make run` starts one)"
        )
        return False
    syncer = torchserve.syncer(cfg, catalog, store)
    try:
        outcome = syncer.run_once().get(task, "")
    finally:
        syncer.mgmt.close()
    if outcome.startswith("failed"):
        raise TaskError(f"the local TorchServe could not serve {task}: {outcome}")
    headers = {"X-API-Key": api_key} if api_key else {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        models = _listed(f"{cfg.gateway_url}/v1/models", headers)
        if models is not None:
            entry = next((m for m in models if m["task"] == task), None)
            if (entry is not None and _answers(entry)) if routed else entry is None:
                return True
        time.sleep(1.0)
    raise TaskError(
        f"the gateway at {cfg.gateway_url} did not {'route' if routed else 'drop'} {task} within {timeout_s:.0f} s "
        "(it is published: each host's sync applies it on its next pass); see var/log/gateway.log"
    )


def _listed(url: str, headers: dict[str, str]) -> list[dict[str, Any]] | None:
    """The gateway's task list; None while it does not answer. A refused key is the caller's to fix now."""
    try:
        response = httpx.get(url, headers=headers, timeout=10)
    except httpx.HTTPError:
        return None
    if response.status_code in (401, 403):
        which = "no API key was given" if not headers else "the API key given was refused"
        raise TaskError(
            f"the task is published, but the gateway at {url} answered {response.status_code}: {which}. "
            "Pass a key of the gateway's with --api-key (or set MODELOPS_API_KEY) to wait for its route"
        )
    try:
        models: list[dict[str, Any]] = response.json()["models"]
    except (KeyError, ValueError, TypeError):
        return None
    return models
