"""Train -> package -> publish, for one task or for every task that has nothing published yet."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any, TypedDict, Unpack

from contract.catalog import (
    DEFAULT_RECIPE,
    MAX_ACCURACY_DROP,
    ImageHeadsRecipe,
    ImageRecipe,
    Recipe,
    TaskSpec,
    TextHeadsRecipe,
    TextRecipe,
)
from contract.logs import log_event
from modelops.package.archive import package
from modelops.store.s3 import ModelStore
from modelops.store.upgrades import due_for_upgrade
from modelops.train.progress import progress

logger = logging.getLogger(__name__)


class TrainOverrides(TypedDict, total=False):
    """What smoke and CI runs change in a recipe: fewer steps and examples, another seed."""

    seed: int
    max_steps: int | None
    train_examples: int | None
    eval_examples: int | None
    dev_examples: int | None
    blend_examples: int | None  # text blends only


# The trainer of each kind of recipe, as (module, function): imported only when used, since each pulls in its
# own libraries. A new input kind or training method is one more entry.
TRAINERS: dict[type[Recipe], tuple[str, str]] = {
    TextRecipe: ("modelops.train.text", "train_text"),
    TextHeadsRecipe: ("modelops.train.heads", "train_text_heads"),
    ImageRecipe: ("modelops.train.image", "train_image"),
    ImageHeadsRecipe: ("modelops.train.heads", "train_image_heads"),
}


def train_model(
    spec: TaskSpec, recipe_name: str, data_root: Path, out_dir: Path, **overrides: Unpack[TrainOverrides]
) -> dict[str, Any]:
    """Train with the trainer of the recipe's kind (`TRAINERS`)."""
    recipe = spec.recipe(recipe_name)
    module, function = TRAINERS[type(recipe)]
    trainer = getattr(importlib.import_module(module), function)
    record: dict[str, Any] = trainer(spec, recipe, data_root, out_dir, **overrides)
    return record


def build_archive(
    spec: TaskSpec,
    recipe_name: str,
    data_root: Path,
    work_dir: Path,
    variant_max_drop: float = MAX_ACCURACY_DROP,
    **overrides: Unpack[TrainOverrides],
) -> Path:
    """Train then package; `variant_max_drop` as in `package` (the tests' tiny builds keep every variant)."""
    trained = work_dir / spec.task / "model"
    progress().stage(spec.task, "preparing", recipe=recipe_name)
    try:
        record = train_model(spec, recipe_name, data_root, trained, **overrides)
        progress().stage(spec.task, "packaging", accuracy=record["validation"]["accuracy"])
        return package(spec, trained, work_dir / spec.task, data_root, variant_max_drop=variant_max_drop)
    except BaseException as exc:
        progress().stage(spec.task, "failed", reason=repr(exc)[:300])
        raise


def build_and_publish(
    spec: TaskSpec, recipe_name: str, data_root: Path, store: ModelStore, work_dir: Path
) -> dict[str, object]:
    archive = build_archive(spec, recipe_name, data_root, work_dir)
    progress().stage(spec.task, "publishing")
    published = store.publish(archive)
    progress().stage(spec.task, "done", version=published["version"], accuracy=_accuracy(published))
    return published


def _accuracy(published: dict[str, Any]) -> float | None:
    return published.get("card", {}).get("validation", {}).get("accuracy")


def recipe_or_default(spec: TaskSpec, recipe_name: str) -> str:
    """The recipe asked for when the task has it, else its default one (a catalog task without `quick`)."""
    return recipe_name if recipe_name in spec.recipes else DEFAULT_RECIPE


def build_missing(
    catalog: dict[str, TaskSpec], recipe_name: str, data_root: Path, store: ModelStore, work_dir: Path
) -> list[str]:
    """Build and publish each task with no published archive; published models are reused, never rebuilt."""
    published = store.read_manifest().models
    built = []
    for spec in catalog.values():
        if spec.model_name in published:
            entry = published[spec.model_name]
            log_event(logger, "build.reuse_published", model=spec.model_name, version=entry.default)
            continue
        build_and_publish(spec, recipe_or_default(spec, recipe_name), data_root, store, work_dir)
        built.append(spec.model_name)
    return built


def upgrade_published(
    catalog: dict[str, TaskSpec], recipe_name: str, data_root: Path, store: ModelStore, work_dir: Path
) -> list[str]:
    """Build and publish `recipe_name` for each task due for it (`due_for_upgrade`), one after the other:
    `make run`'s background upgrade."""
    due = due_for_upgrade(catalog, recipe_name, store)
    for spec in due:
        log_event(logger, "build.upgrade", model=spec.model_name, recipe=recipe_name)
        progress().stage(spec.task, "queued", recipe=recipe_name)
    for spec in due:
        build_and_publish(spec, recipe_name, data_root, store, work_dir)
    return [spec.model_name for spec in due]
