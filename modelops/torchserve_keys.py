"""TorchServe's key file, parsed with the standard library alone.

Kept apart from `modelops.torchserve` (httpx, the catalog) because the container health check reads it every
few seconds and should not pay for those imports; everything else uses `modelops.torchserve.read_keys`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Keys:
    inference: str
    management: str
    api: str


def parse_keys(path: Path) -> Keys:
    """The three keys; raises OSError, or ValueError/KeyError/TypeError for a malformed file."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    return Keys(inference=raw["inference"]["key"], management=raw["management"]["key"], api=raw["API"]["key"])
