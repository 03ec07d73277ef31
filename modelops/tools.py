"""Small helpers shared across the build package: finding installed tools, hashing files."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path


def bin_path(name: str) -> str:
    """An executable installed beside the running interpreter (the project's virtualenv), else `name` on PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
