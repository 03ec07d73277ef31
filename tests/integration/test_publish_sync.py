"""Publish -> S3 -> verified download, against the real SeaweedFS: layout, integrity, idempotent sync."""

from __future__ import annotations

import json

import httpx
import pytest

from contract.catalog import task_document
from modelops.build import build_missing
from modelops.store.kserve import refresh_kserve_view, refresh_kserve_view_if_stale
from modelops.store.s3 import IntegrityError, ModelStore, StoreLocation, archive_path
from modelops.tools import file_sha256
from tests.conftest import TEST_BUCKET, Stack

pytestmark = pytest.mark.integration


def test_publish_writes_archive_sha_card_then_manifest(live_stack: Stack, tmp_path) -> None:
    store = ModelStore(StoreLocation(TEST_BUCKET, "roundtrip"))
    archive = live_stack.archives["disaster"]
    published = store.publish(archive)
    version = published["version"]
    key = archive_path("disaster", version)
    listing = store.s3.list_objects_v2(Bucket=TEST_BUCKET, Prefix="roundtrip/")["Contents"]
    assert {o["Key"] for o in listing} >= {
        f"roundtrip/{key}",
        f"roundtrip/{key}.sha256",
        f"roundtrip/model-store/disaster/{version}/model_card.json",
        f"roundtrip/model-store/disaster/{version}/task_spec.json",
        "roundtrip/models.json",
    }
    assert store.task_spec("disaster", version) == task_document(live_stack.catalog["disaster"])
    model = store.read_manifest().models["disaster"]
    assert model.default == version
    assert model.versions[version].sha256 == file_sha256(archive)
    downloaded = store.download(model.versions[version], tmp_path / "disaster.mar")
    assert downloaded.read_bytes() == archive.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["disaster.mar"]  # no temp file left behind


def test_kserve_view_holds_each_default_flat_with_a_config(live_stack: Stack) -> None:
    store = ModelStore(StoreLocation(TEST_BUCKET, "kserve-view"))
    first = store.publish(live_stack.archives["pose"])["version"]
    refresh_kserve_view(store, live_stack.catalog)
    body = store.s3.get_object(Bucket=TEST_BUCKET, Key="kserve-view/kserve/model-store/pose.mar")["Body"].read()
    assert body == live_stack.archives["pose"].read_bytes()
    config = store.s3.get_object(Bucket=TEST_BUCKET, Key="kserve-view/kserve/config/config.properties")["Body"]
    properties = dict(line.split("=", 1) for line in config.read().decode().splitlines() if "=" in line)
    snapshot = json.loads(properties["model_snapshot"])
    assert snapshot["models"]["pose"][first]["marName"] == "pose.mar"
    assert snapshot["models"]["pose"][first]["batchSize"] == live_stack.catalog["pose"].batch_size
    assert properties["model_store"] == "/mnt/models/model-store"


def test_kserve_view_is_refreshed_when_its_config_is_not_what_this_code_writes(live_stack: Stack) -> None:
    store = ModelStore(StoreLocation(TEST_BUCKET, "kserve-stale"))
    store.publish(live_stack.archives["sentiment"])
    assert refresh_kserve_view_if_stale(store, live_stack.catalog)  # no view yet
    assert not refresh_kserve_view_if_stale(store, live_stack.catalog)  # current: nothing copied again
    store.put("kserve/config/config.properties", b"inference_address=http://0.0.0.0:8085\n", "text/plain")
    assert refresh_kserve_view_if_stale(store, live_stack.catalog)  # e.g. written by an older release
    body, _ = store.get("kserve/config/config.properties") or (b"", "")
    assert b"disable_token_authorization=true" in body


def test_tampered_archive_is_refused_and_local_copy_kept(live_stack: Stack, tmp_path) -> None:
    store = ModelStore(StoreLocation(TEST_BUCKET, "tampered"))
    published = store.publish(live_stack.archives["sentiment"])
    target = tmp_path / "sentiment.mar"
    target.write_bytes(b"the copy already being served")
    store.s3.put_object(Bucket=TEST_BUCKET, Key=f"tampered/{published['key']}", Body=b"not what the manifest says")
    entry = store.read_manifest().models["sentiment"].versions[published["version"]]
    with pytest.raises(IntegrityError, match="does not match"):
        store.download(entry, target)
    assert target.read_bytes() == b"the copy already being served"
    assert [p.name for p in tmp_path.iterdir()] == ["sentiment.mar"]


def test_sync_is_idempotent_when_published_versions_are_served(live_stack: Stack) -> None:
    assert live_stack.sync() == {
        "sentiment": "already-serving",
        "disaster": "already-serving",
        "pose": "already-serving",
    }


def test_an_archive_whose_spec_disagrees_with_the_published_one_is_refused(live_stack: Stack) -> None:
    """The spec published beside the serving version is changed (as a hand edit, or a half-finished upload
    would): sync refuses the archive with the reason and keeps the version serving; put back, all is well."""
    entry = live_stack.store.read_manifest().models["pose"]
    key = f"model-store/pose/{entry.default}/task_spec.json"
    original, _ = live_stack.store.get(key) or (b"", "")
    edited = json.loads(original) | {"labels": ["a", "b"], "description": "edited"}
    live_stack.store.put(key, json.dumps(edited).encode(), "application/json")
    try:
        outcome = live_stack.sync()["pose"]
        assert outcome.startswith("failed: ")
        assert "the task spec in the archive differs from the one published beside it (description, labels)" in outcome
        models = httpx.get(f"{live_stack.gateway}/v1/models", timeout=30).json()["models"]
        assert next(m for m in models if m["task"] == "pose")["loaded"]["ready"]  # the served version stays
    finally:
        live_stack.store.put(key, original, "application/json")
    assert live_stack.sync()["pose"] == "already-serving"


def test_build_missing_reuses_every_published_model(live_stack: Stack, tmp_path) -> None:
    assert build_missing(live_stack.catalog, "fast", tmp_path, live_stack.store, tmp_path) == []
    assert list(tmp_path.iterdir()) == []  # nothing was trained (the data folder given does not even exist)
