"""`evaluate` in-process (the handler code on the archive) and `--via` the live gateway must agree."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from contract.catalog import REPO_ROOT
from modelops.train.data import data_dir, load_split
from modelops.train.evaluate import evaluate, format_report
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


def test_data_folder_means_the_held_out_validation_split_and_latency_is_reported(live_stack: Stack) -> None:
    spec = live_stack.catalog["disaster"]
    served = evaluate(spec, data_dir(), via=live_stack.gateway, limit=6, batch=1)
    local = evaluate(spec, data_dir(), archive=live_stack.archives["disaster"], limit=6, batch=3)
    held_out = load_split(spec, data_dir()).validation[:6]
    assert served["examples"] == local["examples"] == 6
    # confusion rows are the true labels: their totals are the held-out examples' label counts
    assert [sum(row) for row in served["confusion"]] == [sum(ex.label == i for ex in held_out) for i in range(2)]
    assert served["confusion"] == local["confusion"]
    assert (served["requests"], local["requests"]) == (6, 2)
    assert 0 < served["latency_ms_p50"] <= served["latency_ms_p95"]
    assert served["examples_per_s"] > 0


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
