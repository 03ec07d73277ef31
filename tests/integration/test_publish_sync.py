"""Publish -> S3 -> verified download -> TorchServe registration, against the real SeaweedFS and TorchServe."""

from __future__ import annotations

import pytest

from modelops import stack
from modelops.s3store import IntegrityError, ModelStore, StoreLocation
from modelops.sync import sync
from modelops.tools import file_sha256
from tests.conftest import TEST_BUCKET, Stack

pytestmark = pytest.mark.integration


def test_publish_then_download_round_trip_is_byte_identical(live_stack: Stack, tmp_path) -> None:
    store = ModelStore(StoreLocation(TEST_BUCKET, "roundtrip"))
    archive = live_stack.archives["disaster"]
    entry = store.publish(archive)
    manifest = store.read_manifest()
    assert manifest["models"]["disaster"]["sha256"] == file_sha256(archive) == entry["sha256"]
    assert manifest["models"]["disaster"]["card"]["task"] == "disaster"
    downloaded = store.download(manifest["models"]["disaster"], tmp_path)
    assert downloaded.read_bytes() == archive.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["disaster.mar"]  # no temp file left behind


def test_tampered_archive_is_refused_and_local_copy_kept(live_stack: Stack, tmp_path) -> None:
    store = ModelStore(StoreLocation(TEST_BUCKET, "tampered"))
    entry = store.publish(live_stack.archives["sentiment"])
    good = tmp_path / "sentiment.mar"
    good.write_bytes(b"the copy already being served")
    key = store.location.key("sentiment.mar")
    store.s3.put_object(Bucket=TEST_BUCKET, Key=key, Body=b"not the archive the manifest describes")
    with pytest.raises(IntegrityError, match="does not match"):
        store.download(entry, tmp_path)
    assert good.read_bytes() == b"the copy already being served"
    assert [p.name for p in tmp_path.iterdir()] == ["sentiment.mar"]


def test_sync_is_idempotent_when_published_versions_are_served(live_stack: Stack) -> None:
    mgmt = stack.management_client(live_stack.cfg)
    try:
        outcomes = sync(live_stack.catalog, live_stack.store, live_stack.cfg.model_store, mgmt)
    finally:
        mgmt.close()
    assert outcomes == {"sentiment": "already-serving", "disaster": "already-serving", "pose": "already-serving"}
    for name, entry in live_stack.published.items():
        assert file_sha256(live_stack.cfg.model_store / f"{name}.mar") == entry["sha256"]
