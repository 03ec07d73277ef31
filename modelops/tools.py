"""Locating the command-line tools installed with the project's Python packages."""

from __future__ import annotations

import sys
from pathlib import Path


def bin_path(name: str) -> str:
    """An executable installed beside the running interpreter (the project's virtualenv), else `name` on PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name
