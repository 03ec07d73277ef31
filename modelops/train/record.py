"""What both trainers do before and after fitting: pick the data for the recipe and announce the run; then
score it and write `training.json` (recipe, data split and hash, time, validation metrics), which packaging
turns into the archive's model card."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from contract.catalog import Recipe, RecipeBase, TaskSpec
from contract.logs import log_event
from modelops.train.data import Example, TrainingSets, training_sets
from modelops.train.metrics import classification_report

logger = logging.getLogger(__name__)


def start_training(
    spec: TaskSpec,
    recipe: RecipeBase,
    data_root: Path,
    *,
    seed: int,
    max_steps: int | None,
    train_examples: int | None,
    eval_examples: int | None,
    dev_examples: int | None = None,
) -> TrainingSets:
    """The split and the train/dev/validation sets (recipe sizes unless overridden); logs `train.start`."""
    sets = training_sets(
        spec,
        data_root,
        seed,
        train_examples if train_examples is not None else recipe.train_examples,
        eval_examples if eval_examples is not None else recipe.eval_examples,
        dev_examples if dev_examples is not None else recipe.dev_examples,
    )
    log_event(
        logger,
        "train.start",
        task=spec.task,
        base_checkpoint=spec.base_checkpoint,
        recipe=recipe.model_dump(),
        train_examples=len(sets.train),
        dev_examples=len(sets.dev),
        validation_examples=len(sets.validation),
        max_steps=max_steps,
    )
    return sets


def write_training_record(
    out_dir: Path,
    spec: TaskSpec,
    recipe: Recipe,
    sets: TrainingSets,
    probabilities: Any,
    *,
    max_steps: int | None,
    train_seconds: float,
    **extra: Any,
) -> dict[str, Any]:
    """Score the validation probabilities (as served: blended, tempered), write `training.json`, log
    `train.done`; returns the record."""
    confidences, predictions = probabilities.max(dim=-1)
    metrics = classification_report(
        [ex.label for ex in sets.validation], predictions.tolist(), spec.labels, confidences.tolist()
    )
    record = {
        "task": spec.task,
        "base_checkpoint": spec.base_checkpoint,
        "recipe": {**recipe.model_dump(), "train_examples": len(sets.train)},
        "max_steps": max_steps,
        "data": {
            **sets.split.describe(),
            "extra_datasets": sets.extra,
            "train_examples_used": len(sets.train),
            "dev_examples_used": len(sets.dev),
            "validation_examples_used": len(sets.validation),
        },
        "train_seconds": round(train_seconds, 1),
        **extra,
        "validation": metrics,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "training.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    log_event(
        logger,
        "train.done",
        task=spec.task,
        seconds=record["train_seconds"],
        accuracy=metrics["accuracy"],
        macro_f1=metrics["macro_f1"],
        out_dir=str(out_dir),
    )
    return record


def accuracy(probabilities: Any, examples: list[Example]) -> float:
    """Share of examples whose most probable class (a tensor's argmax) is their label, to 4 places."""
    if not examples:
        return 0.0
    predicted = probabilities.argmax(-1).tolist()
    return round(sum(p == ex.label for p, ex in zip(predicted, examples, strict=True)) / len(examples), 4)
