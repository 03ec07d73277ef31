"""Train -> package -> publish, for one task or for every task that has nothing published yet."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from modelops.catalog import MAX_ACCURACY_DROP, TaskSpec
from modelops.logs import log_event
from modelops.package import package
from modelops.s3store import ModelStore

logger = logging.getLogger(__name__)


def train_model(
    spec: TaskSpec, recipe_name: str, data_root: Path, out_dir: Path, **overrides: int | None
) -> dict[str, Any]:
    """Fine-tune with the trainer for the task's kind.

    `overrides` (smoke and CI runs): max_steps, train_examples, eval_examples, dev_examples.
    """
    if spec.kind == "image":
        from modelops.train_image import train_image as trainer
    else:
        from modelops.train import train_text as trainer
    return trainer(spec, spec.recipe(recipe_name), data_root, out_dir, **overrides)


def build_archive(
    spec: TaskSpec,
    recipe_name: str,
    data_root: Path,
    work_dir: Path,
    variant_max_drop: float = MAX_ACCURACY_DROP,
    **overrides: int | None,
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
    published = store.read_manifest()["models"]
    built = []
    for spec in catalog.values():
        if spec.model_name in published:
            entry = published[spec.model_name]
            log_event(logger, "build.reuse_published", model=spec.model_name, version=entry["default"])
            continue
        build_and_publish(spec, recipe_name, data_root, store, work_dir)
        built.append(spec.model_name)
    return built
