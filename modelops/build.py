"""Train -> package -> publish, for one task or for every task that has nothing published yet."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, TypedDict, Unpack

from contract.catalog import MAX_ACCURACY_DROP, TaskSpec
from contract.logs import log_event
from modelops.package.archive import package
from modelops.store.s3 import ModelStore

logger = logging.getLogger(__name__)


class TrainOverrides(TypedDict, total=False):
    """What smoke and CI runs change in a recipe: fewer steps and examples, another seed."""

    seed: int
    max_steps: int | None
    train_examples: int | None
    eval_examples: int | None
    dev_examples: int | None


def train_model(
    spec: TaskSpec, recipe_name: str, data_root: Path, out_dir: Path, **overrides: Unpack[TrainOverrides]
) -> dict[str, Any]:
    """Fine-tune with the trainer for the task's kind (imported only then: each pulls in its own libraries)."""
    if spec.kind == "image":
        from modelops.train.image import train_image

        return train_image(spec, spec.recipe(recipe_name), data_root, out_dir, **overrides)
    from modelops.train.text import train_text

    return train_text(spec, spec.recipe(recipe_name), data_root, out_dir, **overrides)


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
    train_model(spec, recipe_name, data_root, trained, **overrides)
    return package(spec, trained, work_dir / spec.task, data_root, variant_max_drop=variant_max_drop)


def build_and_publish(
    spec: TaskSpec, recipe_name: str, data_root: Path, store: ModelStore, work_dir: Path
) -> dict[str, object]:
    return store.publish(build_archive(spec, recipe_name, data_root, work_dir))


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
        build_and_publish(spec, recipe_name, data_root, store, work_dir)
        built.append(spec.model_name)
    return built
