"""Writing how far a build is (the format: `contract.progress`), for `make run`'s terminal view, the gateway's
`GET /v1/models` and the UI.

A build started by `make run` is given the folder (`MODELOPS_PROGRESS_DIR`); each task it trains has its own
file there, rewritten atomically (at most once a second while a stage steps), so builds running side by side
never overwrite each other's. Without the variable, reporting costs nothing.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from contract.progress import PROGRESS_DIR_ENV

_MIN_INTERVAL_S = 1.0


class Progress:
    """This build's entries, by task."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.entries: dict[str, dict[str, Any]] = {}
        self._stage_started: dict[str, float] = {}
        self._written: dict[str, float] = {}

    def _write(self, task: str, force: bool) -> None:
        now = time.monotonic()
        if self.folder is None or (not force and now - self._written.get(task, 0.0) < _MIN_INTERVAL_S):
            return
        self._written[task] = now
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{task}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.entries[task]), encoding="utf-8")
        os.replace(tmp, path)

    def stage(self, task: str, stage: str, *, recipe: str | None = None, **facts: Any) -> None:
        """A task enters a stage (written at once); a `recipe` starts the task's entry afresh."""
        self._stage_started[task] = time.monotonic()
        if recipe is not None or task not in self.entries:
            self.entries[task] = {"task": task, "recipe": recipe, "started": time.time()}
        self.entries[task].update({"stage": stage, "progress": None, "eta_s": None, **facts})
        self._write(task, force=True)

    def step(self, task: str, done: int, total: int) -> None:
        """How far the task's current stage is (written at most once a second)."""
        entry = self.entries.get(task)
        if entry is None or total <= 0:
            return
        fraction = min(1.0, done / total)
        elapsed = time.monotonic() - self._stage_started.get(task, time.monotonic())
        entry["progress"] = round(fraction, 3)
        entry["eta_s"] = round(elapsed * (1 - fraction) / fraction) if fraction > 0.02 else None
        self._write(task, force=False)


_current: Progress | None = None


def progress() -> Progress:
    """This process's reporter: into the folder `MODELOPS_PROGRESS_DIR` names, else nowhere."""
    global _current
    if _current is None:
        named = os.environ.get(PROGRESS_DIR_ENV)
        _current = Progress(Path(named) if named else None)
    return _current
