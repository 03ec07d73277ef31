"""TorchServe's formats the service relies on, with the standard library alone: its token key file, the bearer
header built from a key, and the READY-worker count of a management `describe` answer.

TorchServe (>= 0.11.1) writes `key_file.json` into its working directory at start with three keys: the
inference key (predictions), the management key (model registration and status) and the API key (only for
minting new keys). Keys expire (`token_expiration_min`), so callers re-read the file rather than caching a key
forever. The gateway, the container health check (every few seconds) and the build's management client all
read it here, so none pays for another's imports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Where `make run` runs TorchServe: the ports of its inference and management APIs and, inside the local
# stack's state folder, its working directory with the key file. The local stack starts it there, and the
# gateway looks there when no upstream is configured.
LOCAL_INFERENCE_PORT = 8080
LOCAL_MANAGEMENT_PORT = 8081
LOCAL_METRICS_PORT = 8082
KEY_FILE_NAME = "key_file.json"


def local_torchserve_dir(state_dir: Path) -> Path:
    return state_dir / "torchserve"


class TorchServeError(RuntimeError):
    """TorchServe is unreachable or answered with an error; the message carries its reason."""


@dataclass(frozen=True)
class Keys:
    inference: str
    management: str
    api: str


def parse_keys(path: Path) -> Keys:
    """The three keys; raises OSError, or ValueError/KeyError/TypeError for a malformed file."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    return Keys(inference=raw["inference"]["key"], management=raw["management"]["key"], api=raw["API"]["key"])


def read_keys(path: Path) -> Keys:
    """Parse TorchServe's key file; raises TorchServeError naming the file if it is missing or malformed."""
    try:
        return parse_keys(path)
    except FileNotFoundError:
        raise TorchServeError(f"TorchServe key file {path} not found (is TorchServe running?)") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise TorchServeError(f"TorchServe key file {path} is malformed: {exc!r}") from None


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def ready_workers(description: list[dict[str, Any]] | None) -> int:
    """Count READY workers in a management `GET /models/<name>` answer (default version first)."""
    if not description:
        return 0
    return sum(1 for worker in description[0].get("workers", []) if worker.get("status") == "READY")
