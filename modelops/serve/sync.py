"""Bring one TorchServe in line with the manifest in S3, without a restart and without failing a request.

For each model in the manifest (the catalog's and the tasks users added alike), one pass:
1. download the manifest's default version if it is not already here (temp file, sha256 check, atomic rename);
2. read the task spec packaged in the archive and check it against the one published beside it (and against
   the catalog's entry, for a catalog task): an archive that disagrees is refused, the current one keeps serving;
3. register it next to the version being served, wait until its workers are READY, send one warm-up request;
4. make it TorchServe's default (requests switch over; nothing is dropped);
5. drain and unregister every other version, and delete local archives no longer in the manifest.
A model the manifest no longer lists (`modelops task remove`) is drained and unregistered, and its archives
deleted.

A failure at any step leaves the current default serving; it is logged and the loop retries with backoff.
The last manifest applied is kept in the model store, so when S3 is unreachable a host (re)starts on the
archives it already has, and the loop recovers by itself when S3 returns.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from contract import jobs
from contract.catalog import CatalogError, TaskSpec, parse_task_document, task_document
from contract.logs import log_event
from contract.manifest import Manifest, PublishedVersion
from contract.torchserve import TorchServeError, bearer, read_keys, ready_workers
from modelops.kinds import KINDS
from modelops.serve.torchserve import ManagementClient
from modelops.store.s3 import ModelStore, StoreError, archived_task_spec, local_archive
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
# What makes a task the same task: a serving setting (workers, batch size) may differ between an archive and the
# catalog an operator edits, but these may not.
IDENTITY = ("task", "kind", "model_name", "labels")


class SpecMismatch(StoreError):
    """An archive's packaged task spec disagrees with the one published beside it, or with the catalog's."""


@dataclass
class SyncStatus:
    """What the last passes did; written to a JSON file operators (and tests) can read."""

    passes: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    s3_reachable: bool = True
    last_success: str | None = None
    outcomes: dict[str, str] = field(default_factory=dict)


def starting_workers(spec: TaskSpec, serving: dict[str, Any] | None) -> int:
    """How many workers a new version is registered with: as many as the version it replaces has now (a warm
    task switches without a cold start, a task scaled to zero stays at zero), at least `min_workers`; a new
    task's `workers`, or none when it may be scaled to zero (its first request starts it)."""
    fewest = spec.worker_range[0]
    if serving is None:
        return spec.workers if fewest else 0
    return max(fewest, len(serving.get("workers", [])))


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
        self._catalog_models = {spec.model_name: spec for spec in catalog.values()}

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

    def _spec(self, name: str, version: str, relative: str) -> TaskSpec:
        """The spec to serve a version with: the one packaged in its archive, checked against the one published
        beside it; for a catalog task, the catalog's entry (its serving settings are the operator's current
        choice), checked against the archive's on what makes the task (IDENTITY). Archives built before they
        carried a spec are served by their catalog entry."""
        packaged = archived_task_spec(self.model_store / relative)
        catalog = self._catalog_models.get(name)
        if packaged is None:
            if catalog is None:
                raise SpecMismatch(f"{relative} carries no task spec and no catalog task serves model {name!r}")
            return catalog
        if self.status.s3_reachable:
            published = self.store.task_spec(name, version)
            if published is not None and published != packaged:
                differ = sorted(k for k in {*published, *packaged} if published.get(k) != packaged.get(k))
                raise SpecMismatch(
                    f"{relative}: the task spec in the archive differs from the one published beside it "
                    f"({', '.join(differ)}); republish the task"
                )
        try:
            spec = parse_task_document(packaged)
        except CatalogError as exc:
            raise SpecMismatch(f"{relative}: its task spec is invalid: {exc}") from None
        if spec.model_name != name:
            raise SpecMismatch(f"{relative}: its task spec is for model {spec.model_name!r}, not {name!r}")
        if catalog is None:
            return spec
        ours, theirs = task_document(catalog), task_document(spec)
        differ = [k for k in IDENTITY if ours[k] != theirs[k]]
        if differ:
            raise SpecMismatch(
                f"{relative}: models.toml's task {catalog.task!r} differs from the archive's in {', '.join(differ)}; "
                "rebuild the model after changing them"
            )
        return catalog

    def _pinned(self, name: str, published: set[str]) -> set[str]:
        """The versions of a model that unfinished bulk jobs were pinned to (`contract.jobs`)."""
        keys = self.store.keys(jobs.pins_prefix(name))
        return {key.split("/")[3] for key in keys if len(key.split("/")) > 4} & published

    def _hold(self, spec: TaskSpec, version: str, url: str) -> None:
        """Keep a pinned version registered beside the default (again after a TorchServe restart)."""
        if version in {d["modelVersion"] for d in self.mgmt.describe(spec.model_name, "all") or []}:
            return
        self.mgmt.register(spec, url, version, spec.workers)
        self.mgmt.wait_ready(spec.model_name, version)
        log_event(logger, "sync.held_for_job", model=spec.model_name, version=version)

    def _retire(self, name: str) -> str:
        """Stop serving a model the manifest no longer lists: drain and unregister its versions, delete its
        archives."""
        for version in {d["modelVersion"] for d in self.mgmt.describe(name, "all") or []}:
            self.mgmt.wait_drained(name, version)
            self.mgmt.unregister(name, version)
            log_event(logger, "sync.unregistered", model=name, version=version)
        self._prune(name, keep=set())
        return "removed"

    def _warm_up(self, spec: TaskSpec, version: str) -> None:
        """One real request to the new version before it takes traffic (first calls pay one-off costs)."""
        if not self.inference_url:
            return
        content, content_type = KINDS[spec.kind].warm_up()
        key = read_keys(self.mgmt.key_file).inference
        url = f"{self.inference_url}/predictions/{spec.model_name}/{version}"
        response = httpx.post(url, content=content, headers={**bearer(key), "Content-Type": content_type}, timeout=60)
        if response.status_code != 200:
            raise TorchServeError(f"warm-up of {spec.model_name} {version}: HTTP {response.status_code}")

    def _serve(self, spec: TaskSpec, version: str, url: str, pinned: set[str] | None) -> str:
        """Serve `version` as the default; unregister every other version but the `pinned` ones (None: S3 could
        not say which are, so none is unregistered)."""
        name = spec.model_name
        loaded = {d["modelVersion"]: d for d in self.mgmt.describe(name, "all") or []}
        default_now = (self.mgmt.describe(name) or [{}])[0].get("modelVersion") if loaded else None
        outcome = "already-serving"
        fewest = spec.worker_range[0]
        if version not in loaded:
            workers = starting_workers(spec, loaded.get(default_now) if default_now else None)
            self.mgmt.register(spec, url, version, workers)
            if workers:
                self.mgmt.wait_ready(name, version)
                self._warm_up(spec, version)
            outcome = "registered"
        elif fewest and ready_workers([loaded[version]]) == 0:
            self.mgmt.wait_ready(name, version)
        if default_now not in (None, version):
            self.mgmt.set_default(name, version)
            outcome = "switched"
            # Requests routed to the old version just before the switch may still be queued or inside a
            # worker's batch: unregistering then would kill them. Give them time, then wait for the queue.
            time.sleep(DRAIN_GRACE_S)
        for old in loaded:
            if old != version and pinned is not None and old not in pinned:
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
            if spec.model_name not in manifest:
                log_event(logger, "sync.model_missing", logging.WARNING, model=spec.model_name, reason="not published")
                outcomes[spec.model_name] = "missing"
        for name, entry in manifest.items():
            version = entry.default
            try:
                url = self._archive(name, version, entry.versions[version])
                spec = self._spec(name, version, url)
                pinned = self._pinned(name, set(entry.versions)) if self.status.s3_reachable else None
                outcomes[name] = self._serve(spec, version, url, pinned)
                for held in sorted((pinned or set()) - {version}):
                    self._hold(spec, held, self._archive(name, held, entry.versions[held]))
                if self.status.s3_reachable:
                    self._prune(name, keep=set(entry.versions))
                # every pass says what it changed; a model already serving is news only at debug level
                level = logging.DEBUG if outcomes[name] == "already-serving" else logging.INFO
                log_event(logger, "sync.model", level, model=name, version=version, outcome=outcomes[name])
            except (StoreError, TorchServeError, httpx.HTTPError, OSError) as exc:
                log_event(logger, "sync.model_failed", logging.ERROR, model=name, version=version, reason=str(exc))
                outcomes[name] = f"failed: {exc}"
        # A model whose archives are here but that the manifest no longer lists was removed. Only a manifest read
        # from S3 can say so (the local fallback is the last one applied); until its archives are gone, every
        # pass tries again, so a removal that failed half-way is finished later.
        here = {path.name.rsplit("-", 1)[0] for path in self.model_store.glob("*-*.mar")}
        for name in sorted(here - manifest.keys() if self.status.s3_reachable else ()):
            try:
                outcomes[name] = self._retire(name)
                log_event(logger, "sync.model", model=name, outcome="removed")
            except (TorchServeError, httpx.HTTPError, OSError) as exc:
                log_event(logger, "sync.model_failed", logging.ERROR, model=name, reason=str(exc))
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
