"""Build progress: how far each task's training is, for the gateway's `GET /v1/models`, the UI and `make run`.

A build started by `make run` writes one JSON file per task it trains into a folder (`MODELOPS_PROGRESS_DIR`;
`modelops.train.progress` writes them, several builds at once each their own tasks); the gateway reads the
folder when `GATEWAY_TRAINING_STATUS_DIR` names it. A task's file:

    {"task": "sentiment", "recipe": "fast", "stage": "training", "progress": 0.42, "eta_s": 180, "started": <s>}

`stage` is `queued`, `preparing`, `features`, `training`, `packaging`, `publishing`, `done` or `failed`; `progress` the
fraction of the stage done (null when unknown); `eta_s` the seconds the stage should take still, from its
own pace so far (null until it can tell).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PROGRESS_DIR_ENV = "MODELOPS_PROGRESS_DIR"


def read_progress(folder: Path) -> dict[str, dict[str, Any]]:
    """Every task's entry in the folder, by task (none when there is no build; a file being replaced at this
    instant is read next time)."""
    entries: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(entry, dict) and isinstance(entry.get("task"), str):
            entries[entry["task"]] = entry
    return entries
