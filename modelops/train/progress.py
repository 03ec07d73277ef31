"""Writing how far a build is (the file's format: `contract.progress`), for the supervisor's terminal view, the
gateway's `GET /v1/models` and the UI.

A build started by `make run` is given the file (`MODELOPS_PROGRESS_FILE`); each task it trains gets an entry,
rewritten atomically (at most once a second while a stage steps). Without the variable, reporting costs
nothing.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from contract.progress import PROGRESS_FILE_ENV, read_progress

_MIN_INTERVAL_S = 1.0


class Progress:
    """One build's entries, by task."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        # what earlier builds of the same run wrote (the quick versions' entries while the better ones train)
        self.entries: dict[str, dict[str, Any]] = read_progress(path) if path else {}
        self._stage_started: dict[str, float] = {}
        self._written = 0.0

    def _write(self, force: bool) -> None:
        now = time.monotonic()
        if self.path is None or (not force and now - self._written < _MIN_INTERVAL_S):
            return
        self._written = now
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.entries, indent=2), encoding="utf-8")
        os.replace(tmp, self.path)

    def stage(self, task: str, stage: str, *, recipe: str | None = None, **facts: Any) -> None:
        """A task enters a stage (written at once); a new `recipe` starts the task's entry afresh."""
        self._stage_started[task] = time.monotonic()
        entry = self.entries.get(task, {})
        if recipe is not None and entry.get("recipe") != recipe:
            entry = self.entries[task] = {"recipe": recipe, "started": time.time()}
        entry.update({"stage": stage, "progress": None, "eta_s": None, **facts})
        self._write(force=True)

    def step(self, task: str, done: int, total: int) -> None:
        """How far the task's current stage is (written at most once a second)."""
        entry = self.entries.get(task)
        if entry is None or total <= 0:
            return
        fraction = min(1.0, done / total)
        elapsed = time.monotonic() - self._stage_started.get(task, time.monotonic())
        entry["progress"] = round(fraction, 3)
        entry["eta_s"] = round(elapsed * (1 - fraction) / fraction) if fraction > 0.02 else None
        self._write(force=False)


_current: Progress | None = None


def progress() -> Progress:
    """This process's reporter: to the file `MODELOPS_PROGRESS_FILE` names, else nowhere."""
    global _current
    if _current is None:
        named = os.environ.get(PROGRESS_FILE_ENV)
        _current = Progress(Path(named) if named else None)
    return _current
