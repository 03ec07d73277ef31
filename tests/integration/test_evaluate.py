"""`evaluate` in-process (the handler code on the archive) and `--via` the live gateway must agree."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from modelops.catalog import REPO_ROOT
from modelops.data import data_dir
from modelops.evaluate import evaluate, format_report
from tests.conftest import Stack

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("task", "limit"), [("disaster", 24), ("sentiment", 8), ("pose", 8)])
def test_in_process_and_via_gateway_agree(live_stack: Stack, task: str, limit: int) -> None:
    spec = live_stack.catalog[task]
    data = data_dir() / spec.dataset
    local = evaluate(spec, data, archive=live_stack.archives[task], limit=limit)
    served = evaluate(spec, data, via=live_stack.gateway, limit=limit)
    assert local["examples"] == served["examples"] == limit
    assert local["confusion"] == served["confusion"]
    assert local["accuracy"] == served["accuracy"]
    table = format_report(served)
    assert "macro-F1" in table
    assert all(label in table for label in spec.labels)


def test_command_line_prints_table_and_json(live_stack: Stack, tmp_path) -> None:
    out = tmp_path / "report.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelops",
            "--log-level",
            "WARNING",
            "evaluate",
            "--task",
            "disaster",
            "--data",
            str(data_dir() / "disaster" / "tweets.csv"),
            "--via",
            live_stack.gateway,
            "--limit",
            "10",
            "--json",
            str(out),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert "accuracy" in result.stdout
    assert "confusion" in result.stdout
    report = json.loads(out.read_text())
    assert report["examples"] == 10
    assert set(report["per_class"]) == {"not_disaster", "disaster"}
    assert json.loads(result.stdout.strip().splitlines()[-1]) == report
