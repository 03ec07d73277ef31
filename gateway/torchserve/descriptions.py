"""What TorchServe's management describe answers say, in the gateway's terms: per upstream what is loaded (for
/readyz and /v1/models, in the answers' own `LoadedVersion`), and what a model's serving version says of
itself (its card and task spec)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from contract.status import LoadedVersion
from contract.torchserve import ready_workers
from contract.wire import CARD_FIELD, SPEC_FIELD


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
