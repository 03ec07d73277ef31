"""The spec of a task a user adds from their own data: the catalog entry `modelops task add` writes.

A new task starts from its kind's defaults (the backbone shipped on PyPI, one worker, the heads recipe that
cross-validates every setting on the user's rows) and the facts of the data: its labels, its file or folder,
its columns. It is parsed by the catalog's own model, so it is held to every rule a `models.toml` entry is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contract.catalog import TaskSpec, parse_task_document
from modelops.kinds import KINDS

# The serving defaults of a new task. One worker when it is called, none when it is not: a worker costs 200-260 MB
# (PSS) whether it answers or not, so an added task is scaled to zero after an idle period and started again by its
# next request (docs/scaling.md); under a deep queue the gateway gives it a second worker.
SERVING_DEFAULTS = {
    "batch_size": 4,
    "max_batch_delay_ms": 5,
    "workers": 1,
    "min_workers": 0,
    "max_workers": 2,
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
    min_workers: int = 0,
) -> TaskSpec:
    """A new task's spec from its kind's defaults and its data (labels in sorted order, so a retrain on the
    same data gives the same label indices); `min_workers` above 0 keeps that many warm while idle."""
    defaults = KINDS[kind].new_task
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
    if min_workers:
        warm = max(min_workers, int(SERVING_DEFAULTS["workers"]))
        document |= {"min_workers": min_workers, "workers": warm, "max_workers": max(warm, 2)}
    if "text" in defaults:  # a text kind's input section carries its length limit
        document["text"] = {**defaults["text"], "max_chars": max_chars}
    return parse_task_document(document)
