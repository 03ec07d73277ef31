"""Bring TorchServe's model store in line with what is published in S3, then register the models.

For each catalog task: download the published archive if the local copy is missing or differs (verified by
sha256, atomic rename), then make sure TorchServe serves that version. When S3 is unreachable, archives already
in the local model store are served as they are, so a host restarts fine during an S3 outage.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from modelops.catalog import TaskSpec
from modelops.logs import log_event
from modelops.package import read_model_card
from modelops.s3store import ModelStore, StoreError
from modelops.tools import file_sha256
from modelops.torchserve import ManagementClient, ready_workers

logger = logging.getLogger(__name__)


def _local_entry(spec: TaskSpec, model_store: Path) -> dict[str, Any] | None:
    archive = model_store / f"{spec.model_name}.mar"
    if not archive.is_file():
        return None
    return {"file": archive.name, "version": read_model_card(archive)["version"]}


def _ensure_served(spec: TaskSpec, entry: dict[str, Any], mgmt: ManagementClient) -> str:
    """Register `entry` unless that version is already loaded; returns what was done."""
    described = mgmt.describe(spec.model_name) or []
    loaded = [d["modelVersion"] for d in described]
    if entry["version"] in loaded:
        if ready_workers([d for d in described if d["modelVersion"] == entry["version"]]) == 0:
            mgmt.wait_ready(spec.model_name)
        return "already-serving"
    # A different version is loaded: replace it. (Swapping without a gap needs versioned archive names.)
    for version in loaded:
        mgmt.unregister(spec.model_name, version)
    mgmt.register(spec, entry["file"])
    mgmt.wait_ready(spec.model_name)
    return "registered"


def sync(catalog: dict[str, TaskSpec], store: ModelStore, model_store: Path, mgmt: ManagementClient) -> dict[str, str]:
    """One pass; returns {model_name: outcome}. Raises nothing for a single model's failure: it is logged."""
    try:
        published = store.read_manifest()["models"]
        s3_ok = True
    except StoreError as exc:
        log_event(logger, "sync.s3_unavailable", logging.WARNING, reason=str(exc))
        published, s3_ok = {}, False
    outcomes: dict[str, str] = {}
    for spec in catalog.values():
        name = spec.model_name
        try:
            entry = published.get(name)
            if entry is not None:
                local = model_store / entry["file"]
                if not (local.is_file() and file_sha256(local) == entry["sha256"]):
                    store.download(entry, model_store)
            else:
                entry = _local_entry(spec, model_store)
                if entry is None:
                    where = "published in S3" if s3_ok else "in the local model store (S3 is unreachable)"
                    log_event(logger, "sync.model_missing", logging.WARNING, model=name, reason=f"not {where}")
                    outcomes[name] = "missing"
                    continue
            outcomes[name] = _ensure_served(spec, entry, mgmt)
            log_event(logger, "sync.model", model=name, version=entry["version"], outcome=outcomes[name])
        except Exception as exc:  # one model's failure must not stop the others from syncing
            log_event(logger, "sync.model_failed", logging.ERROR, model=name, reason=str(exc))
            outcomes[name] = f"failed: {exc}"
    return outcomes
