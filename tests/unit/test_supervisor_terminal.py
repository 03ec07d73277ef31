"""`make run`'s human view: a line per stage, a task's progress at most once a minute and only when it moved."""

from __future__ import annotations

import io

import pytest

from modelops.local import supervisor
from modelops.local.supervisor import Terminal


def test_stages_and_progress_make_few_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(supervisor.time, "monotonic", lambda: now[0])
    out = io.StringIO()
    terminal = Terminal(out, every_s=60)

    def at(seconds: float, **entry: object) -> None:
        now[0] = 100.0 + seconds
        terminal.progress({"sentiment": {"recipe": "fast", **entry}})

    at(0, stage="queued")
    at(5, stage="preparing")
    at(10, stage="training", progress=0.1, eta_s=300)
    at(30, stage="training", progress=0.2, eta_s=240)  # too soon after the last line
    at(75, stage="training", progress=0.2, eta_s=240)
    at(140, stage="training", progress=0.2, eta_s=240)  # has not moved
    at(200, stage="done", accuracy=0.9213)
    at(260, stage="done", accuracy=0.9213)
    assert out.getvalue().splitlines() == [
        "[ 0:10]   sentiment    fast version: training [##..................]  10%, about 5 min left",
        "[ 1:15]   sentiment    fast version: training [####................]  20%, about 4 min left",
        "[ 3:20]   sentiment    fast version: published, validation accuracy 0.921",
    ]
