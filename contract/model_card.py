"""The model card: `model_card.json` inside every archive, saying how the model was built and how well it does.

Packaging writes it; the store lists it beside each published version, and the bench and tests read it back.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

MODEL_CARD = "model_card.json"


def read_model_card(archive: Path) -> dict[str, Any]:
    """The model card inside a .mar (a zip), without extracting the weights."""
    with zipfile.ZipFile(archive) as zf:
        card: dict[str, Any] = json.loads(zf.read(MODEL_CARD))
        return card
