"""The container images for real: `make image-test` builds the three images with Podman and runs the compose
stack from them, checked from outside (modelops/dev/images.py). Skipped only where no engine can run: no
Podman (scripts/test-prerequisites.sh installs it with the other tools) or not root (a local base image is
made with debootstrap, and containers publish ports on this host)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from contract.catalog import REPO_ROOT
from modelops.dev.images import TARGETS, WORK_DIR

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("podman") is None, reason="no Podman: make test-prerequisites installs it"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the image test runs as root (debootstrap, published ports)"),
]


@pytest.mark.timeout(2400)
def test_the_images_build_and_the_compose_stack_answers_restarts_and_stops() -> None:
    report_file = WORK_DIR / "report.json"
    report_file.unlink(missing_ok=True)
    done = subprocess.run([sys.executable, "-m", "modelops.dev.images"], cwd=REPO_ROOT, capture_output=True, text=True)
    print(done.stdout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(report_file.read_text(encoding="utf-8"))
    assert set(report["builds"]) == set(TARGETS)
    assert report["builds"]["gateway"]["mb"] <= 250, "the gateway image grew past 250 MB"
    checks = report["checks"]
    assert all(check["passed"] for check in checks.values()), checks
    assert {f"/v1/{task} answers" for task in ("sentiment", "disaster", "pose")} <= set(checks)
    assert checks["the gateway image holds no torch"]["passed"]
    assert checks["a killed gateway container is restarted by its policy"]["restarts"] >= 1
    assert checks["the stack stops cleanly"]["containers_left"] == 0
