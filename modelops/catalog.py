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
    """How to fine-tune a task's model (see the recipe comments in `models.toml`).

    Text: `max_length` tokens, of which the first `head_tokens` and the rest from the end (head+tail);
    `linear_member` blends a hashed n-gram logistic regression (`handlers/linear.py`) into the probabilities,
    with its weight chosen on the dev slice. Image:
    `trainable_blocks` of the backbone are fine-tuned on `train_views` views per photo (1: the centre
    crop; 2: and its mirror; more: and random crops), `tta_flip` averages each photo with its mirror at serve time.
    `dev_examples` are held out of training to pick the best evaluation (early stopping with `patience`).
    """

    name: str
    epochs: float
    learning_rate: float
    batch_size: int
    max_length: int | None = None
    head_tokens: int | None = None
    linear_member: bool = False
    trainable_blocks: int | None = None
    train_views: int = 2
    tta_flip: bool = False
    train_examples: int | None = None
    eval_examples: int | None = None
    dev_examples: int = 0
    patience: int | None = None


@dataclass(frozen=True)
class TaskSpec:
    """One classifier: where its data is, how it is trained, batched and routed."""

    task: str
    kind: str
    route: str
    model_name: str
    description: str
    handler: str
    labels: tuple[str, ...]
    base_checkpoint: str
    dataset: str
    input_column: str
    label_column: str
    batch_size: int
    max_batch_delay_ms: int
    workers: int
    threads_per_worker: int
    response_timeout_s: int
    label_values: tuple[str, ...] | None = None
    max_chars: int | None = None
    architecture: str | None = None
    image_size: int | None = None
    resize_to: int | None = None
    runtime: str = "torch"
    normalise: str = "none"
    extra_datasets: tuple[str, ...] = ()
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
        common = {
            "task": self.task,
            "kind": self.kind,
            "model_name": self.model_name,
            "labels": list(self.labels),
            "threads_per_worker": self.threads_per_worker,
            "runtime": "torch",
        }
        if self.kind == "text":
            return {
                **common,
                "max_length": recipe.max_length,
                "head_tokens": recipe.head_tokens,
                "normalise": self.normalise,
                "max_chars": self.max_chars,
            }
        return {
            **common,
            "architecture": self.architecture,
            "image_size": self.image_size,
            "resize_to": self.resize_to,
            "tta_flip": recipe.tta_flip,
        }


_REQUIRED = (
    "kind",
    "route",
    "model_name",
    "description",
    "handler",
    "labels",
    "base_checkpoint",
    "dataset",
    "input_column",
    "label_column",
    "batch_size",
    "max_batch_delay_ms",
    "workers",
    "threads_per_worker",
    "response_timeout_s",
)
# Fields each kind of task needs beyond the common ones, and in each of its recipes.
_KIND_FIELDS = {"text": ("max_chars",), "image": ("architecture", "image_size", "resize_to")}
_KIND_RECIPE_FIELDS = {"text": ("max_length",), "image": ("trainable_blocks",)}
# `fast`: what `make run` builds when nothing is published (all tasks in about 15 minutes on 2 cores);
# `full`: `make models`, the most accurate this machine reaches in about 35 minutes; `gpu`: for a machine with a
# CUDA device (training picks it up by itself), never needed by `make run` or the tests.
RECIPE_NAMES = ("fast", "full", "gpu")
DEFAULT_RECIPE = "fast"
# Serving runtimes: `torch` (fp32, eager), `onnx` (ONNX Runtime, fp32, fused graph), `onnx-int8` (ONNX Runtime
# with the Linear/MatMul weights quantised to int8). A variant other than `torch` is exported at package time
# and served only if it loses at most MAX_ACCURACY_DROP on the dev slice; the card records both.
RUNTIMES = ("torch", "onnx", "onnx-int8")
MAX_ACCURACY_DROP = 0.005
# Text clean-up before the model sees a text (handlers/text_normalise.py); the names are that module's too.
NORMALISATIONS = ("none", "tweet")


def _optional_int(raw: dict[str, Any], key: str) -> int | None:
    return int(raw[key]) if key in raw else None


def _parse_recipe(task: str, kind: str, name: str, raw: dict[str, Any]) -> Recipe:
    missing = [key for key in _KIND_RECIPE_FIELDS[kind] if key not in raw]
    if missing:
        raise CatalogError(f"task {task!r} recipe {name!r} is missing {', '.join(missing)}")
    try:
        recipe = Recipe(
            name=name,
            epochs=float(raw["epochs"]),
            learning_rate=float(raw["learning_rate"]),
            batch_size=int(raw["batch_size"]),
            max_length=_optional_int(raw, "max_length"),
            head_tokens=_optional_int(raw, "head_tokens"),
            linear_member=bool(raw.get("linear_member", False)),
            trainable_blocks=_optional_int(raw, "trainable_blocks"),
            train_views=int(raw.get("train_views", 2)),
            tta_flip=bool(raw.get("tta_flip", False)),
            train_examples=_optional_int(raw, "train_examples"),
            eval_examples=_optional_int(raw, "eval_examples"),
            dev_examples=int(raw.get("dev_examples", 0)),
            patience=_optional_int(raw, "patience"),
        )
    except KeyError as exc:
        raise CatalogError(f"task {task!r} recipe {name!r} is missing {exc.args[0]!r}") from None
    if recipe.head_tokens is not None and recipe.max_length is not None and recipe.head_tokens >= recipe.max_length - 2:
        raise CatalogError(f"task {task!r} recipe {name!r}: head_tokens must leave room for a tail in max_length")
    if recipe.linear_member and recipe.dev_examples <= 0:
        raise CatalogError(
            f"task {task!r} recipe {name!r}: a linear member needs dev_examples to choose its penalty and weight"
        )
    return recipe


def _parse_task(task: str, raw: dict[str, Any]) -> TaskSpec:
    kind = str(raw.get("kind", ""))
    if kind not in _KIND_FIELDS:
        raise CatalogError(f"task {task!r}: kind must be one of {', '.join(_KIND_FIELDS)}, got {kind!r}")
    missing = [key for key in (*_REQUIRED, *_KIND_FIELDS[kind]) if key not in raw]
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
    runtime = str(raw.get("runtime", "torch"))
    if runtime not in RUNTIMES:
        raise CatalogError(f"task {task!r}: runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    normalise = str(raw.get("normalise", "none"))
    if normalise not in NORMALISATIONS:
        raise CatalogError(f"task {task!r}: normalise must be one of {', '.join(NORMALISATIONS)}, got {normalise!r}")
    recipes = {name: _parse_recipe(task, kind, name, raw[name]) for name in RECIPE_NAMES if name in raw}
    undeveloped = [name for name, recipe in recipes.items() if runtime != "torch" and recipe.dev_examples <= 0]
    if undeveloped:
        raise CatalogError(
            f"task {task!r}: runtime {runtime!r} is judged on the dev slice, so recipe(s) {', '.join(undeveloped)} "
            "need dev_examples"
        )
    if DEFAULT_RECIPE not in recipes:
        raise CatalogError(f"task {task!r} needs a [tasks.{task}.{DEFAULT_RECIPE}] recipe (what `make run` builds)")
    return TaskSpec(
        task=task,
        kind=kind,
        route=str(raw["route"]),
        model_name=str(raw["model_name"]),
        description=str(raw["description"]),
        handler=str(raw["handler"]),
        labels=labels,
        base_checkpoint=str(raw["base_checkpoint"]),
        dataset=str(raw["dataset"]),
        input_column=str(raw["input_column"]),
        label_column=str(raw["label_column"]),
        label_values=label_values,
        max_chars=_optional_int(raw, "max_chars"),
        architecture=str(raw["architecture"]) if "architecture" in raw else None,
        image_size=_optional_int(raw, "image_size"),
        resize_to=_optional_int(raw, "resize_to"),
        batch_size=int(raw["batch_size"]),
        max_batch_delay_ms=int(raw["max_batch_delay_ms"]),
        workers=int(raw["workers"]),
        threads_per_worker=int(raw["threads_per_worker"]),
        response_timeout_s=int(raw["response_timeout_s"]),
        runtime=runtime,
        normalise=normalise,
        extra_datasets=tuple(str(name) for name in raw.get("extra_datasets", ())),
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
