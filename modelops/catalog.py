"""The model catalog (`models.toml`): the single source of truth for every task.

Build, model server registration and gateway all read it through `load_catalog`, so adding a task is one
entry (plus a handler if the input kind is new). This module must stay free of heavy imports: the gateway
imports it too.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CATALOG = REPO_ROOT / "models.toml"
PYPI_CHECKPOINT_PREFIX = "pypi:"


class CatalogError(ValueError):
    """The catalog file is missing a field or holds an inconsistent value."""


@dataclass(frozen=True)
class Recipe:
    """How to fine-tune a task's model; `max_length` is also what the served model uses."""

    name: str
    epochs: float
    max_length: int
    learning_rate: float
    batch_size: int
    train_examples: int | None = None
    eval_examples: int | None = None


@dataclass(frozen=True)
class TaskSpec:
    """One classifier: where its data is, how it is trained, batched and routed."""

    task: str
    route: str
    model_name: str
    description: str
    handler: str
    labels: tuple[str, ...]
    base_checkpoint: str
    dataset: str
    text_column: str
    label_column: str
    max_chars: int
    batch_size: int
    max_batch_delay_ms: int
    workers: int
    threads_per_worker: int
    response_timeout_s: int
    label_values: tuple[str, ...] | None = None
    recipes: dict[str, Recipe] = field(default_factory=dict)

    def recipe(self, name: str) -> Recipe:
        try:
            return self.recipes[name]
        except KeyError:
            known = ", ".join(sorted(self.recipes)) or "none"
            raise CatalogError(f"task {self.task!r} has no recipe {name!r} (known: {known})") from None

    def label_for_value(self, raw: str) -> str:
        """Map a raw dataset label (e.g. the disaster CSV's `0`/`1`) to its label name."""
        if self.label_values is None:
            if raw not in self.labels:
                raise CatalogError(f"task {self.task!r}: unknown label {raw!r} (expected one of {self.labels})")
            return raw
        try:
            return self.labels[self.label_values.index(raw)]
        except ValueError:
            raise CatalogError(
                f"task {self.task!r}: unknown label value {raw!r} (expected one of {self.label_values})"
            ) from None

    def serving_config(self, recipe: Recipe) -> dict[str, Any]:
        """What the handler needs at serve time; written into the archive as `task.json`."""
        return {
            "task": self.task,
            "model_name": self.model_name,
            "labels": list(self.labels),
            "max_length": recipe.max_length,
            "max_chars": self.max_chars,
            "threads_per_worker": self.threads_per_worker,
        }


_REQUIRED = (
    "route",
    "model_name",
    "description",
    "handler",
    "labels",
    "base_checkpoint",
    "dataset",
    "text_column",
    "label_column",
    "max_chars",
    "batch_size",
    "max_batch_delay_ms",
    "workers",
    "threads_per_worker",
    "response_timeout_s",
)
_RECIPE_NAMES = ("quick",)


def _parse_recipe(task: str, name: str, raw: dict[str, Any]) -> Recipe:
    try:
        return Recipe(
            name=name,
            epochs=float(raw["epochs"]),
            max_length=int(raw["max_length"]),
            learning_rate=float(raw["learning_rate"]),
            batch_size=int(raw["batch_size"]),
            train_examples=int(raw["train_examples"]) if "train_examples" in raw else None,
            eval_examples=int(raw["eval_examples"]) if "eval_examples" in raw else None,
        )
    except KeyError as exc:
        raise CatalogError(f"task {task!r} recipe {name!r} is missing {exc.args[0]!r}") from None


def _parse_task(task: str, raw: dict[str, Any]) -> TaskSpec:
    missing = [key for key in _REQUIRED if key not in raw]
    if missing:
        raise CatalogError(f"task {task!r} is missing {', '.join(missing)}")
    labels = tuple(str(label) for label in raw["labels"])
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise CatalogError(f"task {task!r} needs at least two distinct labels, got {labels}")
    label_values = tuple(str(v) for v in raw["label_values"]) if "label_values" in raw else None
    if label_values is not None and len(label_values) != len(labels):
        raise CatalogError(f"task {task!r}: label_values must pair one to one with labels")
    if not str(raw["route"]).startswith("/"):
        raise CatalogError(f"task {task!r}: route must start with '/'")
    recipes = {name: _parse_recipe(task, name, raw[name]) for name in _RECIPE_NAMES if name in raw}
    return TaskSpec(
        task=task,
        route=str(raw["route"]),
        model_name=str(raw["model_name"]),
        description=str(raw["description"]),
        handler=str(raw["handler"]),
        labels=labels,
        base_checkpoint=str(raw["base_checkpoint"]),
        dataset=str(raw["dataset"]),
        text_column=str(raw["text_column"]),
        label_column=str(raw["label_column"]),
        label_values=label_values,
        max_chars=int(raw["max_chars"]),
        batch_size=int(raw["batch_size"]),
        max_batch_delay_ms=int(raw["max_batch_delay_ms"]),
        workers=int(raw["workers"]),
        threads_per_worker=int(raw["threads_per_worker"]),
        response_timeout_s=int(raw["response_timeout_s"]),
        recipes=recipes,
    )


def parse_catalog(text: str) -> dict[str, TaskSpec]:
    """Parse catalog TOML text into task specs, checking cross-task consistency."""
    data = tomllib.loads(text)
    tasks = data.get("tasks")
    if not tasks:
        raise CatalogError("the catalog defines no [tasks.*] entries")
    specs = {name: _parse_task(name, raw) for name, raw in tasks.items()}
    for attr in ("route", "model_name"):
        values = [getattr(spec, attr) for spec in specs.values()]
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            raise CatalogError(f"{attr} must be unique across tasks, repeated: {', '.join(dupes)}")
    return specs


@lru_cache(maxsize=4)
def _load(path: str) -> dict[str, TaskSpec]:
    return parse_catalog(Path(path).read_text(encoding="utf-8"))


def load_catalog(path: str | os.PathLike[str] | None = None) -> dict[str, TaskSpec]:
    """Load the catalog named by `path`, else `$MODEL_CATALOG`, else the repo's `models.toml`."""
    chosen = path or os.environ.get("MODEL_CATALOG") or DEFAULT_CATALOG
    return _load(str(Path(chosen).resolve()))
