"""Train -> package -> publish, for one task or for every task that has nothing published yet."""

from __future__ import annotations

import logging
from pathlib import Path

from modelops.catalog import TaskSpec
from modelops.logs import log_event
from modelops.package import package
from modelops.s3store import ModelStore
from modelops.train import train_text

logger = logging.getLogger(__name__)


def build_and_publish(
    spec: TaskSpec, recipe_name: str, data_root: Path, store: ModelStore, work_dir: Path, **train_overrides: int
) -> dict[str, object]:
    trained = work_dir / spec.task / "model"
    train_text(spec, spec.recipe(recipe_name), data_root, trained, **train_overrides)
    archive = package(spec, trained, work_dir / spec.task)
    return store.publish(archive)


def build_missing(
    catalog: dict[str, TaskSpec], recipe_name: str, data_root: Path, store: ModelStore, work_dir: Path
) -> list[str]:
    """Build and publish each task with no published archive; published models are reused, never rebuilt."""
    published = store.read_manifest()["models"]
    built = []
    for spec in catalog.values():
        if spec.model_name in published:
            entry = published[spec.model_name]
            log_event(logger, "build.reuse_published", model=spec.model_name, version=entry["version"])
            continue
        build_and_publish(spec, recipe_name, data_root, store, work_dir)
        built.append(spec.model_name)
    return built
