"""The linear member of a text blend, and the blend's weight, chosen on rows neither member trained on.

Why: the dev slice alone (1,000 reviews) cannot tell blend weights a point apart, and the encoder of a
fractional-epoch recipe never sees most training rows. Those rows (up to the recipe's `blend_examples`) join
the dev slice as blend rows: the encoder's scores on them are honest as they are, and the linear member's come
from fits that left them out (`crossval.held_out_probabilities`), so both members are judged as they would
answer new text. The served linear member is then fitted on every training row.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contract.catalog import TextRecipe
from handlers.linear import LinearTextModel, blend
from modelops.train.crossval import Choice, accuracy, blend_grid, choose, held_out_probabilities, paired
from modelops.train.data import Example
from modelops.train.linear_fit import (
    NGRAMS,
    describe,
    feature_matrix,
    fit_linear,
    linear_probabilities,
    linear_weights,
    nb_lr_baseline,
)
from modelops.train.metrics import bootstrap_interval

# Written beside the trained model, never archived: the blend rows with both members' scores, on which packaging
# judges an optimised runtime of the encoder (modelops/package/onnx.py).
BLEND_ROWS_FILE = "blend_rows.jsonl"


@dataclass(frozen=True)
class BlendRows:
    """The training rows, those of them the blend is chosen on (`pool`: the encoder never saw them) and the dev
    slice. Indices address the training rows followed by the dev rows; the blend rows are the pool then dev."""

    train: list[Example]
    pool: list[Example]
    dev: list[Example]

    def texts(self) -> list[str]:
        return [ex.text for ex in [*self.pool, *self.dev]]

    def labels(self) -> np.ndarray:
        return np.array([ex.label for ex in [*self.pool, *self.dev]], dtype=np.int64)

    def pool_index(self) -> np.ndarray:
        position = {id(ex): i for i, ex in enumerate(self.train)}
        return np.array([position[id(ex)] for ex in self.pool], dtype=np.int64)

    def dev_index(self) -> np.ndarray:
        return np.arange(len(self.train), len(self.train) + len(self.dev), dtype=np.int64)


def blend_arrays(encoder: np.ndarray, linear: np.ndarray, linear_weight: float) -> np.ndarray:
    """The handler's blend (`handlers.linear.blend`) of two members' probabilities, in numpy."""
    return blend(torch.from_numpy(encoder), torch.from_numpy(linear), linear_weight).numpy()


def choose_blend(encoder: np.ndarray, linear: np.ndarray, labels: np.ndarray) -> Choice:
    """The linear member's weight (1, 0.95, ..., 0: ties go to the cheaper linear member) with the lowest log
    loss on the rows among those at least as accurate there as the better member alone: the served blend is
    never worse than its best member on the rows (or folds) it was chosen on."""
    floor = max(accuracy(encoder, labels), accuracy(linear, labels))
    return choose({w: blend_arrays(encoder, linear, w) for w in reversed(blend_grid())}, labels, floor=floor)


@dataclass(frozen=True)
class Blend:
    linear: LinearTextModel  # fitted on every training row: the one served
    linear_weight: float
    probabilities: np.ndarray  # the blend's on the blend rows (before the temperature)
    linear_scores: np.ndarray  # the linear member's on the blend rows, each from a fit without the row
    record: dict[str, Any]  # the model card's `blend` section
    linear_record: dict[str, Any]  # the model card's `members.linear`, before its validation accuracy


def fit_and_blend(recipe: TextRecipe, classes: int, rows: BlendRows, encoder: np.ndarray) -> Blend:
    """Fit the linear member, score it on the blend rows without them, choose the weight; `encoder` is the
    encoder's probabilities on the blend rows. With `recipe.baselines`, BASELINES.md's NB-weighted LR is scored
    on the same rows the same way, and the blend paired against it."""
    texts = [ex.text for ex in [*rows.train, *rows.dev]]
    targets = np.array([ex.label for ex in [*rows.train, *rows.dev]], dtype=np.int64)
    train_rows = len(rows.train)
    features = feature_matrix(texts, recipe.linear_bits, NGRAMS)
    started = time.perf_counter()
    served = fit_linear(features[:train_rows], targets[:train_rows], classes, recipe.linear_bits, recipe.linear_c)
    fit_seconds = time.perf_counter() - started

    def linear_fit_predict(fit: np.ndarray, scored: np.ndarray) -> np.ndarray:
        weight, bias = linear_weights(features[fit], targets[fit], classes, recipe.linear_c)
        return linear_probabilities(features[scored], weight, bias)

    pool, dev = rows.pool_index(), rows.dev_index()
    linear = held_out_probabilities(train_rows, pool, dev, linear_fit_predict)
    labels = rows.labels()
    chosen = choose_blend(encoder, linear, labels)
    weight, blended = float(chosen.setting), chosen.probabilities
    record: dict[str, Any] = {
        "rows": len(labels),
        "unseen_training_rows": len(pool),
        "dev_rows": len(dev),
        "linear_weight": weight,
        "accuracy": round(accuracy(blended, labels), 4),
        "accuracy_ci95": bootstrap_interval((blended.argmax(axis=1) == labels).tolist()),
        "vs_encoder": paired(blended, encoder, labels),
        "vs_linear": paired(blended, linear, labels),
    }
    if recipe.baselines:
        baseline = held_out_probabilities(train_rows, pool, dev, nb_lr_baseline(texts, targets, classes))
        record["vs_nb_logistic_regression"] = paired(blended, baseline, labels)
    linear_record = {**describe(recipe.linear_bits, recipe.linear_c, train_rows), "fit_seconds": round(fit_seconds, 1)}
    return Blend(served, weight, blended, linear, record, linear_record)


@dataclass(frozen=True)
class ScoredRows:
    """The blend rows as training scored them: what packaging needs to judge another runtime of the encoder."""

    examples: list[Example]
    encoder: np.ndarray
    linear: np.ndarray

    def labels(self) -> np.ndarray:
        return np.array([ex.label for ex in self.examples], dtype=np.int64)


def save_scored_rows(folder: Path, rows: BlendRows, encoder: np.ndarray, linear: np.ndarray) -> None:
    examples = [*rows.pool, *rows.dev]
    with (folder / BLEND_ROWS_FILE).open("w", encoding="utf-8") as fh:
        for ex, enc, lin in zip(examples, encoder.tolist(), linear.tolist(), strict=True):
            fh.write(json.dumps({"text": ex.text, "label": ex.label, "encoder": enc, "linear": lin}) + "\n")


def read_scored_rows(folder: Path) -> ScoredRows | None:
    """The rows `save_scored_rows` wrote, or None for a model trained without a blend."""
    path = folder / BLEND_ROWS_FILE
    if not path.exists():
        return None
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    examples = [Example(row["text"], int(row["label"])) for row in rows]
    return ScoredRows(examples, np.array([r["encoder"] for r in rows]), np.array([r["linear"] for r in rows]))
