from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from contract.catalog import load_catalog
from contract.manifest import Manifest, PublishedModel, PublishedVersion
from modelops.store.kserve import kserve_properties, view_defaults
from modelops.store.s3 import archive_path, local_archive

ARCHIVE = PublishedVersion(key="k", sha256="0" * 64, size=1, created="2026-11-27T11:00:00Z")


def test_previous_version_is_the_one_published_before_the_default() -> None:
    entry = PublishedModel(
        default="20261127.120000",
        versions=dict.fromkeys(["20261127.110000", "20261126.090000", "20261127.120000", "20261128.000000"], ARCHIVE),
    )
    assert entry.previous_version() == "20261127.110000"
    assert PublishedModel(default="1", versions={"1": ARCHIVE}).previous_version() is None


def test_the_manifest_round_trips_and_names_a_malformed_field() -> None:
    manifest = Manifest(models={"pose": PublishedModel(default="1", versions={"1": ARCHIVE})})
    assert Manifest.parse(manifest.dump()) == manifest
    with pytest.raises(ValidationError, match=r"models\.pose\.versions\.1\.sha256"):
        Manifest.parse(
            '{"models": {"pose": {"default": "1", "versions": {"1": {"key": "k", "size": 1, "created": ""}}}}}'
        )


def test_paths_in_s3_and_on_a_host() -> None:
    assert archive_path("pose", "20261127.1") == "model-store/pose/20261127.1/pose.mar"
    assert local_archive("pose", "20261127.1") == "pose-20261127.1.mar"


def test_kserve_config_names_each_default_with_catalog_batching() -> None:
    catalog = load_catalog()
    manifest = Manifest(
        models={
            "sentiment": PublishedModel(default="2", versions={"1": ARCHIVE, "2": ARCHIVE}),
            "retired": PublishedModel(default="1"),
        }
    )
    properties = dict(
        line.split("=", 1)
        for line in kserve_properties(manifest, catalog).splitlines()
        if "=" in line and not line.startswith("#")
    )
    snapshot = json.loads(properties["model_snapshot"])
    assert snapshot["modelCount"] == 1  # models no longer in the catalog are left out
    assert snapshot["models"]["sentiment"] == {
        "2": {
            "defaultVersion": True,
            "marName": "sentiment.mar",
            "minWorkers": catalog["sentiment"].workers,
            "maxWorkers": catalog["sentiment"].workers,
            "batchSize": catalog["sentiment"].batch_size,
            "maxBatchDelay": catalog["sentiment"].max_batch_delay_ms,
            "responseTimeout": catalog["sentiment"].response_timeout_s,
        }
    }


def test_the_kserve_view_knows_which_defaults_it_holds_so_a_publish_copies_only_what_changed() -> None:
    catalog = load_catalog()
    manifest = Manifest(
        models={
            "sentiment": PublishedModel(default="2", versions={"1": ARCHIVE, "2": ARCHIVE}),
            "pose": PublishedModel(default="7", versions={"7": ARCHIVE}),
        }
    )
    assert view_defaults(kserve_properties(manifest, catalog)) == {"sentiment": "2", "pose": "7"}
    assert view_defaults(None) == {}
    assert view_defaults("model_snapshot={not json") == {}
