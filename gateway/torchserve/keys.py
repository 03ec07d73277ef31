"""A TorchServe's key file, read again only when it changes.

Keys expire and get rotated, so the file is not read once at start: a key rotation needs no gateway restart
(`client.Upstream.send` also re-reads it when TorchServe rejects a key).
"""

from __future__ import annotations

from pathlib import Path

from contract.torchserve import Keys, read_keys


class KeyFile:
    """One TorchServe's key file, cached until its modification time changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: Keys | None = None
        self._mtime: float | None = None

    def get(self, force: bool = False) -> Keys:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        if force or self._keys is None or mtime != self._mtime:
            self._keys = read_keys(self.path)
            self._mtime = mtime
        return self._keys
