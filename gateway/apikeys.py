"""Gateway API keys: who may call, and which tasks each caller may use.

Keys come from `GATEWAY_API_KEYS` (`name:key,...`, for a quick setup) and/or a key file
(`GATEWAY_API_KEYS_FILE`) that stores only SHA-256 digests, one key per line:

    # name   digest                 tasks (optional; default all)
    alice    sha256:9f86d08...      sentiment,disaster

A presented key is hashed and compared with every stored digest in constant time (`hmac.compare_digest`, no
early exit), so neither timing nor a leaked file gives keys away. The file is re-read when it changes:
adding or revoking a key needs no restart. `python -m gateway.apikeys new NAME [--tasks a,b]` makes a key.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

from contract.logs import log_event

logger = logging.getLogger(__name__)

ALL_TASKS = "*"
_NEVER_READ = -1.0  # an mtime no file has: the first check always reads


@dataclass(frozen=True)
class ApiKey:
    name: str
    digest: bytes
    tasks: frozenset[str]

    def allows(self, task: str) -> bool:
        return ALL_TASKS in self.tasks or task in self.tasks


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _from_env(spec: str) -> list[ApiKey]:
    keys = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, key = item.partition(":")
        if not sep or not name or not key:
            raise ValueError("GATEWAY_API_KEYS entries must look like name:key")
        keys.append(ApiKey(name, digest(key), frozenset({ALL_TASKS})))
    return keys


def parse_key_file(text: str, source: str) -> list[ApiKey]:
    keys = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) not in (2, 3) or not parts[1].startswith("sha256:") or len(parts[1]) != 7 + 64:
            raise ValueError(f"{source}:{number}: expected 'name sha256:<64 hex digits> [task,task]'")
        tasks = frozenset(parts[2].split(",")) if len(parts) == 3 else frozenset({ALL_TASKS})
        keys.append(ApiKey(parts[0], bytes.fromhex(parts[1][7:]), tasks))
    return keys


class KeyStore:
    """The accepted keys; empty means the gateway is open (no keys configured)."""

    def __init__(self, env_keys: str, path: Path | None) -> None:
        self._env = _from_env(env_keys)
        self.path = path
        self._file: list[ApiKey] = []
        self._mtime: float | None = _NEVER_READ
        self._reload_if_changed()

    @property
    def enabled(self) -> bool:
        return bool(self._env) or self.path is not None

    def _reload_if_changed(self) -> None:
        if self.path is None:
            return
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            mtime = None  # a missing file means no file keys; the gateway stays closed, not open
        if mtime == self._mtime:
            return
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:  # also when it went between the stat and the read
            log_event(logger, "apikeys.file_missing", logging.ERROR, path=str(self.path))
            text = ""
        try:
            self._file = parse_key_file(text, str(self.path))
        except ValueError as exc:  # keep serving with the keys we had rather than lock everyone out
            log_event(logger, "apikeys.file_invalid", logging.ERROR, path=str(self.path), error=str(exc))
        else:
            log_event(logger, "apikeys.loaded", path=str(self.path), keys=len(self._file))
        self._mtime = mtime

    def match(self, presented: str) -> ApiKey | None:
        self._reload_if_changed()
        wanted = digest(presented)
        found = None
        for key in (*self._env, *self._file):
            if hmac.compare_digest(wanted, key.digest) and found is None:
                found = key
        return found


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway.apikeys", description="Make a gateway API key.")
    sub = parser.add_subparsers(dest="command", required=True)
    new = sub.add_parser("new", help="print a new key once, and the line to append to the key file")
    new.add_argument("name")
    new.add_argument("--tasks", default=None, help="comma-separated tasks this key may use (default: all)")
    args = parser.parse_args()
    key = secrets.token_urlsafe(32)
    line = f"{args.name} sha256:{digest(key).hex()}" + (f" {args.tasks}" if args.tasks else "")
    print(f"key (give it to the caller; it is not stored): {key}")
    print(f"key file line: {line}")


if __name__ == "__main__":
    main()
