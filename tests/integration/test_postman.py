"""The Postman collection (`postman/collection.json`), run with newman against the live gateway, as API users
and their CI would run it: every route, with example requests and test scripts checking status, fields and
labels. A summary is written to `test-artifacts/newman.json`."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from contract.catalog import REPO_ROOT
from modelops.train.data import data_dir
from tests.conftest import Stack

pytestmark = pytest.mark.integration

POSTMAN = REPO_ROOT / "postman"
NEWMAN = POSTMAN / "node_modules" / ".bin" / "newman"
REPORT = REPO_ROOT / "test-artifacts" / "newman.json"


def test_postman_collection_passes_against_the_live_gateway(live_stack: Stack, tmp_path: Path) -> None:
    assert NEWMAN.exists(), "newman is not installed: run `make test` (it runs `npm ci` in postman/)"
    photo = next((data_dir() / "pose" / "running").glob("*.jpg"))
    shutil.copy(photo, tmp_path / "photo.jpg")  # the collection uploads `photo.jpg` from newman's working dir
    for upload in (POSTMAN / "files").iterdir():  # the bulk-job requests' files
        shutil.copy(upload, tmp_path / upload.name)
    REPORT.parent.mkdir(exist_ok=True)
    finished = subprocess.run(
        [
            str(NEWMAN),
            "run",
            str(POSTMAN / "collection.json"),
            "--environment",
            str(POSTMAN / "environment.json"),
            "--env-var",
            f"baseUrl={live_stack.gateway}",
            "--working-dir",
            str(tmp_path),
            "--reporters",
            "cli,json",
            "--reporter-json-export",
            str(REPORT),
            "--color",
            "off",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout[-4000:] + finished.stderr[-2000:]
    run = json.loads(REPORT.read_text(encoding="utf-8"))["run"]
    stats = run["stats"]
    collection = json.loads((POSTMAN / "collection.json").read_text(encoding="utf-8"))
    requests = sum(len(folder["item"]) for folder in collection["item"])
    assert stats["requests"]["total"] == requests
    assert stats["assertions"]["failed"] == 0
    assert stats["assertions"]["total"] >= requests  # every request has at least one test
    assert not run["failures"]
