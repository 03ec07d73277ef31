"""The build progress file: how far each task's training is, for the gateway's `GET /v1/models` and the UI.

A build started by `make run` writes it (`modelops.train.progress`); the gateway reads it when
`GATEWAY_TRAINING_STATUS_FILE` names it. One JSON object, by task:

    {<task>: {"recipe": "fast", "stage": "training", "progress": 0.42, "eta_s": 180, "started": <epoch s>, ...}}

`stage` is `preparing`, `features`, `training`, `packaging`, `publishing`, `done` or `failed`; `progress` the
fraction of the stage done (null when unknown); `eta_s` the seconds the stage should take still, from its
own pace so far (null until it can tell).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PROGRESS_FILE_ENV = "MODELOPS_PROGRESS_FILE"


def read_progress(path: Path) -> dict[str, dict[str, Any]]:
    """The entries a build wrote, or none (no build yet, or a file being replaced at this instant)."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}
