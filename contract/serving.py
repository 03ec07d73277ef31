"""The serving config: what a handler needs at serve time, one typed record per input kind.

The packager writes it into every archive as `task.json` (the catalog's settings for the recipe, then what
training chose on its dev slice: blend weight, temperature, encoder) and the handler reads it back at load.
Standard library only: it travels inside the archives with the handlers, and a TorchServe image installs no
pydantic. A field an older archive lacks takes the default that archive was built to mean; a field this code
does not know is refused at load, naming the file, rather than silently ignored.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SERVING_FILE = "task.json"


@dataclass(frozen=True, kw_only=True)
class ServingConfig:
    """Settings every handler reads."""

    task: str
    kind: str
    model_name: str
    labels: tuple[str, ...]
    # which catalog recipe built it (`quick` first, then better ones)
    recipe: str | None = None
    # intra-op threads per worker: workers scale out, threads stay at 1 on a small CPU box
    threads_per_worker: int = 1
    # `torch` (fp32) or the ONNX Runtime variant exported at package time
    runtime: str = "torch"
    # what training fitted on its dev slice; every handler applies it last
    temperature: float = 1.0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)


@dataclass(frozen=True, kw_only=True)
class TextServing(ServingConfig):
    max_length: int
    # tokens kept from the head of a long text, the rest of `max_length` from its tail; None: cut at the end
    head_tokens: int | None = None
    normalise: str = "none"
    max_chars: int
    # `finetuned`, `frozen` (a frozen sentence encoder with a linear head) or `none` (the linear member alone)
    encoder: str = "finetuned"
    # the linear member's weight in the blend; 0: no linear member
    linear_weight: float = 0.0


@dataclass(frozen=True, kw_only=True)
class ImageServing(ServingConfig):
    architecture: str
    image_size: int
    resize_to: int
    # test-time augmentation: the photo and its mirror image, probabilities averaged
    tta_flip: bool = False


SERVING_KINDS: dict[str, type[ServingConfig]] = {"text": TextServing, "image": ImageServing}


def serving_from(data: dict[str, Any], source: str = SERVING_FILE) -> ServingConfig:
    """The record for `data` (a parsed `task.json`); a ValueError naming `source` when it does not fit."""
    kind = data.get("kind", "image" if "image_size" in data else "text")  # archives before `kind` was written
    cls = SERVING_KINDS.get(kind)
    if cls is None:
        raise ValueError(f"{source}: unknown kind {kind!r} (expected one of {sorted(SERVING_KINDS)})")
    _refuse_unknown(cls, data, source)
    try:
        return cls(**{**data, "kind": kind, "labels": tuple(data.get("labels", ()))})
    except TypeError as exc:  # a required field missing
        raise ValueError(f"{source}: {exc}") from None


def read_serving(model_dir: Path) -> ServingConfig:
    path = model_dir / SERVING_FILE
    return serving_from(json.loads(path.read_text(encoding="utf-8")), str(path))


def with_changes(config: ServingConfig, changes: dict[str, Any]) -> ServingConfig:
    """`config` with `changes` applied (training's choices, an evaluation's overrides); unknown names refused."""
    _refuse_unknown(type(config), changes, f"a {config.kind} model")
    return dataclasses.replace(config, **changes)


def _refuse_unknown(cls: type[ServingConfig], names: Iterable[str], where: str) -> None:
    unknown = sorted(set(names) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"{where}: unknown serving setting(s) {', '.join(unknown)}")
