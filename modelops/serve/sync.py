"""Bring one TorchServe in line with the manifest in S3, without a restart and without failing a request.

For each catalog model, one pass:
1. download the manifest's default version if it is not already here (temp file, sha256 check, atomic rename);
2. register it next to the version being served, wait until its workers are READY, send one warm-up request;
3. make it TorchServe's default (requests switch over; nothing is dropped);
4. drain and unregister every other version, and delete local archives no longer in the manifest.

A failure at any step leaves the current default serving; it is logged and the loop retries with backoff.
The last manifest applied is kept in the model store, so when S3 is unreachable a host (re)starts on the
archives it already has, and the loop recovers by itself when S3 returns.
"""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from contract.catalog import TaskSpec
from contract.logs import log_event
from contract.manifest import Manifest, PublishedVersion
from contract.torchserve import TorchServeError, bearer, read_keys, ready_workers
from modelops.serve.torchserve import ManagementClient
from modelops.store.s3 import ModelStore, StoreError, local_archive
from modelops.tools import file_sha256

logger = logging.getLogger(__name__)

LOCAL_MANIFEST = "models.json"
SYNC_LOCK = ".sync.lock"


def applied_default(model_store: Path, model_name: str) -> tuple[Path, str] | None:
    """The local archive and version of a model's default in the manifest sync last applied, if any."""
    local = model_store / LOCAL_MANIFEST
    entry = Manifest.parse(local.read_text()).models.get(model_name) if local.exists() else None
    if entry is None:
        return None
    return model_store / local_archive(model_name, entry.default), entry.default


DRAIN_GRACE_S = 3.0


@dataclass
class SyncStatus:
    """What the last passes did; written to a JSON file operators (and tests) can read."""

    passes: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    s3_reachable: bool = True
    last_success: str | None = None
    outcomes: dict[str, str] = field(default_factory=dict)


class Syncer:
    def __init__(
        self,
        catalog: dict[str, TaskSpec],
        store: ModelStore,
        model_store: Path,
        mgmt: ManagementClient,
        inference_url: str | None = None,
        status_file: Path | None = None,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.model_store = model_store
        self.mgmt = mgmt
        self.inference_url = inference_url
        self.status_file = status_file
        self.status = SyncStatus()
        self._verified: dict[Path, tuple[float, int]] = {}

    # --- the manifest: from S3, else the last one applied ----------------------------------------------

    def _manifest(self) -> Manifest:
        local = self.model_store / LOCAL_MANIFEST
        try:
            manifest = self.store.read_manifest()
        except StoreError as exc:
            self.status.s3_reachable = False
            log_event(logger, "sync.s3_unavailable", logging.WARNING, reason=str(exc), fallback=str(local))
            return Manifest.parse(local.read_text()) if local.exists() else Manifest()
        self.status.s3_reachable = True
        self.model_store.mkdir(parents=True, exist_ok=True)
        tmp = local.with_suffix(".json.tmp")
        tmp.write_text(manifest.dump())
        os.replace(tmp, local)
        return manifest

    # --- one model ---------------------------------------------------------------------------------------

    def _archive(self, name: str, version: str, entry: PublishedVersion) -> str:
        """The version's archive in the local store, downloaded and verified if needed; returns its URL."""
        relative = local_archive(name, version)
        path = self.model_store / relative
        stat = path.stat() if path.is_file() else None
        if stat and self._verified.get(path) == (stat.st_mtime, stat.st_size):
            return relative
        if stat and file_sha256(path) == entry.sha256:
            self._verified[path] = (stat.st_mtime, stat.st_size)
            return relative
        if not self.status.s3_reachable:
            raise StoreError(f"{relative} is not in the local model store and S3 is unreachable")
        self.store.download(entry, path)
        stat = path.stat()
        self._verified[path] = (stat.st_mtime, stat.st_size)
        return relative

    def _warm_up(self, spec: TaskSpec, version: str) -> None:
        """One real request to the new version before it takes traffic (first calls pay one-off costs)."""
        if not self.inference_url:
            return
        if spec.kind == "image":
            from PIL import Image

            buffer = io.BytesIO()
            Image.new("RGB", (64, 64), (128, 128, 128)).save(buffer, format="PNG")
            content, content_type = buffer.getvalue(), "application/octet-stream"
        else:
            content, content_type = b'{"text": "warm-up"}', "application/json"
        key = read_keys(self.mgmt.key_file).inference
        url = f"{self.inference_url}/predictions/{spec.model_name}/{version}"
        response = httpx.post(url, content=content, headers={**bearer(key), "Content-Type": content_type}, timeout=60)
        if response.status_code != 200:
            raise TorchServeError(f"warm-up of {spec.model_name} {version}: HTTP {response.status_code}")

    def _serve(self, spec: TaskSpec, version: str, url: str) -> str:
        name = spec.model_name
        loaded = {d["modelVersion"]: d for d in self.mgmt.describe(name, "all") or []}
        default_now = (self.mgmt.describe(name) or [{}])[0].get("modelVersion") if loaded else None
        outcome = "already-serving"
        if version not in loaded:
            self.mgmt.register(spec, url, version)
            self.mgmt.wait_ready(name, version)
            self._warm_up(spec, version)
            outcome = "registered"
        elif ready_workers([loaded[version]]) == 0:
            self.mgmt.wait_ready(name, version)
        if default_now not in (None, version):
            self.mgmt.set_default(name, version)
            outcome = "switched"
            # Requests routed to the old version just before the switch may still be queued or inside a
            # worker's batch: unregistering then would kill them. Give them time, then wait for the queue.
            time.sleep(DRAIN_GRACE_S)
        for old in loaded:
            if old != version:
                self.mgmt.wait_drained(name, old)
                self.mgmt.unregister(name, old)
                log_event(logger, "sync.unregistered", model=name, version=old)
        return outcome

    def _prune(self, name: str, keep: set[str]) -> None:
        """Delete local archives of versions the manifest no longer lists."""
        wanted = {local_archive(name, version) for version in keep}
        for path in self.model_store.glob(f"{name}-*.mar"):
            if path.name not in wanted:
                path.unlink(missing_ok=True)
                self._verified.pop(path, None)
                log_event(logger, "sync.pruned", model=name, file=path.name)

    # --- a pass and the loop -----------------------------------------------------------------------------

    def run_once(self) -> dict[str, str]:
        """One pass over every catalog model; returns {model: outcome}. One model's failure spares the rest.

        Passes on one host take turns (an exclusive lock on the model store): a manual `make sync` while the
        `make run` loop is mid-pass would otherwise register the same version twice (TorchServe answers 409).
        """
        self.model_store.mkdir(parents=True, exist_ok=True)
        with (self.model_store / SYNC_LOCK).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            return self._pass()

    def _pass(self) -> dict[str, str]:
        manifest = self._manifest().models
        outcomes: dict[str, str] = {}
        for spec in self.catalog.values():
            name = spec.model_name
            entry = manifest.get(name)
            if entry is None:
                log_event(logger, "sync.model_missing", logging.WARNING, model=name, reason="not in the manifest")
                outcomes[name] = "missing"
                continue
            version = entry.default
            try:
                url = self._archive(name, version, entry.versions[version])
                outcomes[name] = self._serve(spec, version, url)
                if self.status.s3_reachable:
                    self._prune(name, keep=set(entry.versions))
                log_event(logger, "sync.model", model=name, version=version, outcome=outcomes[name])
            except (StoreError, TorchServeError, httpx.HTTPError, OSError) as exc:
                log_event(logger, "sync.model_failed", logging.ERROR, model=name, version=version, reason=str(exc))
                outcomes[name] = f"failed: {exc}"
        self._record(outcomes)
        return outcomes

    def _record(self, outcomes: dict[str, str]) -> None:
        failed = not self.status.s3_reachable or any(o.startswith("failed") for o in outcomes.values())
        self.status.passes += 1
        self.status.outcomes = outcomes
        if failed:
            self.status.failures += 1
            self.status.consecutive_failures += 1
        else:
            self.status.consecutive_failures = 0
            self.status.last_success = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.status_file:
            self.status_file.parent.mkdir(parents=True, exist_ok=True)
            self.status_file.write_text(json.dumps(asdict(self.status), indent=2))

    def next_delay(self, interval_s: float, max_backoff_s: float = 300.0) -> float:
        """The interval after a clean pass; doubling (capped) after each failed one."""
        return min(max_backoff_s, interval_s * 2 ** min(self.status.consecutive_failures, 10))

    def run_forever(self, interval_s: float, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # the loop must outlive any single pass
                log_event(logger, "sync.pass_failed", logging.ERROR, reason=repr(exc))
                self._record({"*": f"failed: {exc}"})
            stop.wait(self.next_delay(interval_s))
