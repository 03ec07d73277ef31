"""Model lifecycle against the real SeaweedFS and TorchServe: rollout under load, rollback, a corrupt
archive, S3 outages, and concurrent publishers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from contract.manifest import Manifest, PublishedModel
from modelops.local import s3, services, torchserve
from modelops.package.archive import package
from modelops.store.s3 import ModelStore, StoreLocation
from modelops.train.data import data_dir
from tests.conftest import TEST_BUCKET, Stack

pytestmark = pytest.mark.integration


class LoadLoop:
    """Clients sending requests to the gateway until stopped; records every status and serving version."""

    def __init__(self, url: str, route: str, clients: int = 2) -> None:
        self.url, self.route = url, route
        self.stop = threading.Event()
        self.seen: list[tuple[int, str | None]] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as http:
            while not self.stop.is_set():
                response = http.post(self.route, json={"text": "Earthquake shakes the city, buildings down"})
                version = response.json().get("model", {}).get("version") if response.status_code == 200 else None
                with self.lock:
                    self.seen.append((response.status_code, version))

    @property
    def failures(self) -> list[int]:
        return [status for status, _ in self.seen if status != 200]

    def versions(self) -> list[str | None]:
        return [version for _, version in self.seen]


@contextmanager
def load(live_stack: Stack, route: str = "/v1/disaster") -> Iterator[LoadLoop]:
    loop = LoadLoop(live_stack.gateway, route)
    for thread in loop.threads:
        thread.start()
    try:
        yield loop
    finally:
        loop.stop.set()
        for thread in loop.threads:
            thread.join(timeout=60)


def new_version(live_stack: Stack, task: str, suffix: str) -> Path:
    """The task's test model re-packaged under a later version (versions sort by build time)."""
    spec = live_stack.catalog[task]
    work = live_stack.archives[task].parent
    version = f"{live_stack.published[task]['version']}.{suffix}"
    return package(spec, work / "model", work / f"v-{suffix}", data_dir(), version=version)


def served_version(live_stack: Stack, task: str) -> str:
    body = httpx.post(f"{live_stack.gateway}/v1/{task}", json={"text": "flood"}, timeout=60).json()
    return body["model"]["version"]


def test_rollout_and_rollback_under_load_fail_no_request(live_stack: Stack) -> None:
    v1 = live_stack.published["disaster"]["version"]
    v2 = live_stack.store.publish(new_version(live_stack, "disaster", "2"))["version"]
    with load(live_stack) as loop:
        while len(loop.seen) < 5:
            threading.Event().wait(0.1)
        assert live_stack.sync()["disaster"] == "switched"  # v2 registered, warmed up, made default
        after_rollout = len(loop.seen)
        while len(loop.seen) < after_rollout + 5:
            threading.Event().wait(0.1)
        assert live_stack.store.set_default("disaster") == v1  # rollback: the version before v2
        assert live_stack.sync()["disaster"] == "switched"
        after_rollback = len(loop.seen)
        while len(loop.seen) < after_rollback + 5:
            threading.Event().wait(0.1)
    assert loop.failures == []
    versions = loop.versions()
    assert versions[0] == v1
    assert v2 in versions[:after_rollback]
    assert versions[-1] == v1
    assert served_version(live_stack, "disaster") == v1
    loaded = torchserve.management_client(live_stack.cfg).describe("disaster", "all")
    assert [d["modelVersion"] for d in loaded] == [v1]  # the old version was drained and unregistered


def test_corrupt_archive_is_refused_and_current_version_keeps_serving(live_stack: Stack) -> None:
    v1 = live_stack.published["sentiment"]["version"]
    bad = live_stack.store.publish(new_version(live_stack, "sentiment", "corrupt"))
    location = live_stack.store.location
    live_stack.store.s3.put_object(Bucket=location.bucket, Key=location.key(bad["key"]), Body=b"flipped bytes")
    try:
        outcome = live_stack.sync()["sentiment"]
        assert outcome.startswith("failed")
        assert "does not match" in outcome
        assert (
            httpx.post(f"{live_stack.gateway}/v1/sentiment", json={"text": "ok"}, timeout=60).json()["model"]["version"]
            == v1
        )
        assert not (live_stack.cfg.model_store / f"sentiment-{bad['version']}.mar").exists()
        status = (live_stack.cfg.run_dir / "sync-status.json").read_text()
        assert '"consecutive_failures": 1' in status
    finally:
        live_stack.store.set_default("sentiment", v1)
    assert live_stack.sync()["sentiment"] == "already-serving"


def test_s3_outage_keeps_serving_and_sync_recovers(live_stack: Stack) -> None:
    services.stop(live_stack.cfg, "s3")
    try:
        outcomes = live_stack.sync()
        assert set(outcomes.values()) == {"already-serving"}  # from the last manifest applied
        status = (live_stack.cfg.run_dir / "sync-status.json").read_text()
        assert '"s3_reachable": false' in status
        assert httpx.get(f"{live_stack.gateway}/readyz", timeout=30).status_code == 200
        # a host restarting during the outage comes back on the archives it already has
        services.stop(live_stack.cfg, "torchserve")
        services.start(live_stack.cfg, torchserve.service(live_stack.cfg))
        assert set(live_stack.sync().values()) == {"registered"}
        assert httpx.get(f"{live_stack.gateway}/readyz", timeout=30).status_code == 200
    finally:
        services.start(live_stack.cfg, s3.service(live_stack.cfg))
    live_stack.sync()
    status = (live_stack.cfg.run_dir / "sync-status.json").read_text()
    assert '"s3_reachable": true' in status
    assert '"consecutive_failures": 0' in status


def test_concurrent_publishes_keep_both_versions(live_stack: Stack) -> None:
    store = ModelStore(StoreLocation(TEST_BUCKET, "concurrent"))
    archives = [new_version(live_stack, "pose", f"p{i}") for i in range(2)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def publish(archive: Path) -> None:
        try:
            barrier.wait()
            ModelStore(store.location).publish(archive)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(a,)) for a in archives]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    versions = store.read_manifest().models["pose"].versions
    assert {f"{live_stack.published['pose']['version']}.p{i}" for i in range(2)} <= set(versions)


def test_a_lost_manifest_race_is_retried_not_overwritten(live_stack: Stack) -> None:
    store = ModelStore(StoreLocation(TEST_BUCKET, "race"))
    store.update_manifest(lambda m: m.models.setdefault("a", PublishedModel(default="1")), "seed")
    rival = ModelStore(store.location)
    interfered: list[bool] = []

    def change(manifest: Manifest) -> None:
        if not interfered:  # between our read and our write, another publisher writes
            interfered.append(True)
            rival.update_manifest(lambda m: m.models.setdefault("b", PublishedModel(default="1")), "rival")
        manifest.models.setdefault("c", PublishedModel(default="1"))

    store.update_manifest(change, "ours")
    assert set(store.read_manifest().models) == {"a", "b", "c"}


def test_concurrent_sync_passes_on_one_host_take_turns(live_stack: Stack) -> None:
    """`make sync` run while the `make run` loop is mid-pass: without the host lock both registered the new
    version and the second failed with TorchServe's 409."""
    v1 = live_stack.published["disaster"]["version"]
    v3 = live_stack.store.publish(new_version(live_stack, "disaster", "3"))["version"]
    outcomes: list[dict[str, str]] = []
    passes = [threading.Thread(target=lambda: outcomes.append(live_stack.sync())) for _ in range(2)]
    for thread in passes:
        thread.start()
    for thread in passes:
        thread.join(timeout=300)
    assert sorted(o["disaster"] for o in outcomes) == ["already-serving", "switched"]
    assert not [o for outcome in outcomes for o in outcome.values() if o.startswith("failed")]
    assert served_version(live_stack, "disaster") == v3
    live_stack.store.set_default("disaster", v1)
    assert live_stack.sync()["disaster"] == "switched"
