from __future__ import annotations

import json

from contract.catalog import load_catalog
from modelops.store.kserve import kserve_properties
from modelops.store.s3 import archive_path, local_archive, previous_version


def test_previous_version_is_the_one_published_before_the_default() -> None:
    entry = {
        "default": "20261127.120000",
        "versions": {key: {} for key in ["20261127.110000", "20261126.090000", "20261127.120000", "20261128.000000"]},
    }
    assert previous_version(entry) == "20261127.110000"
    assert previous_version({"default": "1", "versions": {"1": {}}}) is None


def test_paths_in_s3_and_on_a_host() -> None:
    assert archive_path("pose", "20261127.1") == "model-store/pose/20261127.1/pose.mar"
    assert local_archive("pose", "20261127.1") == "pose-20261127.1.mar"


def test_kserve_config_names_each_default_with_catalog_batching() -> None:
    catalog = load_catalog()
    manifest = {
        "models": {
            "sentiment": {"default": "2", "versions": {"1": {}, "2": {}}},
            "retired": {"default": "1", "versions": {}},
        }
    }
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
