"""Which published models a better recipe should replace: `make run`'s background upgrade (quick -> fast).

Light on purpose (S3 and the catalog only): the supervisor asks it, and must never import torch.
"""

from __future__ import annotations

from typing import Any

from contract.catalog import DEFAULT_RECIPE, RECIPE_NAMES, TaskSpec
from modelops.store.s3 import ModelStore


def due_for_upgrade(catalog: dict[str, TaskSpec], recipe_name: str, store: ModelStore) -> list[TaskSpec]:
    """The tasks whose published default was built by a recipe listed before `recipe_name` (RECIPE_NAMES:
    quick, fast, full, gpu) and that have that recipe."""
    rank: Any = RECIPE_NAMES.index
    published = store.read_manifest().models
    due = []
    for spec in catalog.values():
        entry = published.get(spec.model_name)
        if entry is None or recipe_name not in spec.recipes:
            continue
        card = store.model_card(spec.model_name, entry.default) or {}
        built_by = str((card.get("recipe") or {}).get("name", DEFAULT_RECIPE))
        if built_by in RECIPE_NAMES and rank(built_by) < rank(recipe_name):
            due.append(spec)
    return due
