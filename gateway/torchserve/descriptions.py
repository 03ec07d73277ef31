"""What TorchServe's management describe answers say, in the gateway's terms: per upstream what is loaded (for
/readyz and /v1/models, in the answers' own `LoadedVersion`), and what a model's serving version says of
itself (its card and task spec)."""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from contract.logs import log_event
from contract.status import LoadedVersion
from contract.torchserve import ready_workers
from contract.wire import CARD_FIELD, SPEC_FIELD

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Described:
    """What a model's serving version says of itself in a customized describe: its version, its model card and
    its task spec (JSON text; "" for an archive built before archives carried one)."""

    version: str | None
    card: dict[str, Any]
    spec: str

    @classmethod
    def read(cls, description: dict[str, Any]) -> Described | None:
        """From one entry of a customized describe; None when no worker put a model card there."""
        metadata = description.get("customizedMetadata")
        card = _card(metadata)
        if card is None:
            return None
        spec = metadata.get(SPEC_FIELD) if isinstance(metadata, dict) else None
        return cls(description.get("modelVersion"), card, spec if isinstance(spec, str) else "")


class SavedDescriptions:
    """The last description of each model, by version: a cold model's card and spec are answered from here while
    that version serves, so routing a task or showing its card never starts a worker. With a folder, each
    description is also a file there (`<model>@<version>.json`), so a gateway started again routes the cold tasks
    it routed before without starting each of them; without one they live as long as the process."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._held: dict[str, Described] = {}

    def get(self, model: str, version: str | None) -> Described | None:
        held = self._held.get(model)
        if held is not None and held.version == version:
            return held
        path = self._path(model, version)
        if path is None or not path.is_file():
            return None
        try:
            raw = orjson.loads(path.read_bytes())
            found = Described(raw["version"], raw["card"], raw["spec"])
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
            return None  # a torn or foreign file: described again by a worker
        self._held[model] = found
        return found if found.version == version else None

    def put(self, model: str, described: Described) -> None:
        self._held[model] = described
        path = self._path(model, described.version)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            for older in path.parent.glob(f"{model}@*.json"):
                older.unlink(missing_ok=True)
            partial = path.with_suffix(".part")
            partial.write_bytes(orjson.dumps(dataclasses.asdict(described)))
            partial.replace(path)
        except OSError as exc:  # a full or read-only disk costs a cold start after a restart, nothing more
            log_event(logger, "descriptions.not_saved", logging.WARNING, model=model, error=str(exc))

    def _path(self, model: str, version: str | None) -> Path | None:
        if self.folder is None or version is None or not (_SAFE.fullmatch(model) and _SAFE.fullmatch(version)):
            return None
        return self.folder / f"{model}@{version}.json"


_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class UpstreamStatus:
    """One upstream's answer for /readyz and /v1/models: per model what is loaded (None: not loaded), or why
    it could not be asked."""

    name: str
    models: dict[str, LoadedVersion | None] | None
    problem: str | None

    def ready(self, model: str) -> bool:
        info = (self.models or {}).get(model)
        return bool(info and info.ready)


def loaded(description: list[dict[str, Any]] | None) -> LoadedVersion | None:
    """What a plain describe tells about a model: its default version, its workers and its batching."""
    if not description:
        return None
    default = description[0]
    ready = ready_workers(description)
    return LoadedVersion(
        ready=ready > 0,
        version=default.get("modelVersion"),
        ready_workers=ready,
        workers=len(default.get("workers", [])),
        batch_size=default.get("batchSize"),
        max_batch_delay_ms=default.get("maxBatchDelay"),
    )


def pinged(healthy: bool) -> LoadedVersion:
    """What a ping-only upstream (no management API) tells about a model: ready or not, nothing more."""
    return LoadedVersion(
        ready=healthy, version=None, ready_workers=None, workers=None, batch_size=None, max_batch_delay_ms=None
    )


def _card(metadata: Any) -> dict[str, Any] | None:
    """The model card in a customized describe: the handler sends it as JSON text under `model_card_json` (an
    object would lose its null fields to TorchServe's re-serialisation)."""
    text = metadata.get(CARD_FIELD) if isinstance(metadata, dict) else None
    if not isinstance(text, str):
        return None
    try:
        card = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return card if isinstance(card, dict) and card else None
