"""Heads recipes: linear heads on frozen pretrained backbones, every setting chosen by k-fold cross-validation on
all the training rows. What a few hundred or a few thousand labelled rows can afford on 2 cores.

Text: the hashed n-gram NB-weighted logistic regression (`handlers/linear.py`) and a logistic regression on the
frozen sentence encoder's embedding (`handlers/pooled_encoder.py`), each member's penalty chosen out of fold,
then their blend weight, then whether the encoder earns its cost at all (a cheaper linear-only model is served
unless the blend's out-of-fold accuracy beats the linear member's with a paired 95% interval above zero),
then the temperature. Image: a logistic regression on the frozen backbone's pooled features of each photo and
its mirror, written into the backbone's own classifier layer, so the served network is the ordinary one.

Embeddings and features are computed once per row; only the heads are refitted per fold, so cross-validation
costs seconds. The record's `validation` holds the out-of-fold figures of the served combination, and
`cross_validation` what was chosen, against what, with paired differences.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contract.catalog import ImageHeadsRecipe, ImageTask, TaskSpec, TextHeadsRecipe, TextTask
from contract.logs import log_event
from handlers.calibration import temper
from handlers.linear import LinearTextModel
from handlers.pooled_encoder import mean_pooled, save_head
from handlers.text_encoding import TextEncoder
from handlers.text_normalise import NORMALISERS
from modelops.train.blend import choose_blend
from modelops.train.calibrate import calibration_record, fit_temperature
from modelops.train.crossval import Choice, choose, fold_ids, out_of_fold, paired
from modelops.train.data import Example, TrainingSets, training_sets
from modelops.train.linear_fit import DEFAULT_BITS, NGRAMS, feature_matrix, linear_probabilities, linear_weights
from modelops.train.metrics import classification_report
from modelops.train.progress import progress
from modelops.train.record import write_training_record

logger = logging.getLogger(__name__)

# Penalties tried (inverse strength, larger = weaker), simplest first: ties go to the stronger penalty.
LINEAR_C = (0.1, 0.3, 1.0, 3.0)
ENCODER_C = (0.3, 1.0, 3.0, 10.0)
IMAGE_C = (0.01, 0.03, 0.1, 0.3, 1.0)
EMBED_BATCH = 32


def heads_sets(
    spec: TextTask | ImageTask, recipe: TextHeadsRecipe | ImageHeadsRecipe, data_root: Path, seed: int, sizes: Any
) -> TrainingSets:
    """The rows to cross-validate on: every deduplicated row when the recipe holds none out (a user's task), else
    the train part of the task's usual split (with its extra datasets); a stratified sample of them with
    `train_examples` (the recipe's, or a CI-sized run's)."""
    return training_sets(
        spec,
        data_root,
        seed,
        sizes.get("train_examples") or recipe.train_examples,
        sizes.get("eval_examples"),
        validation_fraction=recipe.validation_fraction,
    )


def _logistic(features: Any, labels: np.ndarray, c: float) -> Any:
    """A multinomial logistic regression (L-BFGS) on dense features: embeddings, pooled photo features."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=2000).fit(features, labels)


def _sparse_logistic(features: Any, labels: np.ndarray, c: float) -> Any:
    """One-vs-rest logistic regressions (liblinear) on sparse n-gram features: L-BFGS took minutes per fit on
    5,000 reviews' TF-IDF 1-2 grams at C=100, liblinear seconds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    return OneVsRestClassifier(LogisticRegression(C=c, solver="liblinear")).fit(features, labels)


def _full_weights(model: Any, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(classes, dims) weight and (classes,) bias giving the fitted model's class probabilities through a
    softmax: a two-class logistic regression has one row, the other class's logit being 0."""
    coef, intercept = model.coef_, model.intercept_
    if classes == 2 and coef.shape[0] == 1:
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.array([0.0, intercept[0]])
    return coef.astype(np.float32), intercept.astype(np.float32)


def _cv_record(choice: Choice, labels: np.ndarray) -> dict[str, Any]:
    return {"setting": choice.setting, "accuracy": round(choice.accuracy, 4), "log_loss": round(choice.log_loss, 4)}


def _record(
    out_dir: Path,
    spec: TaskSpec,
    recipe: TextHeadsRecipe | ImageHeadsRecipe,
    sets: TrainingSets,
    served: np.ndarray,
    validation: np.ndarray | None,
    started: float,
    cross_validation: dict[str, Any],
    serving: dict[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    """Fit the temperature on the served combination's out-of-fold probabilities and write the training record.
    Its `validation` figures are the held-out validation split's (`validation`: the final model's probabilities
    there) when the recipe keeps one, else the out-of-fold answers'; both tempered as the handler tempers."""
    labels = [ex.label for ex in sets.train]
    out_of_fold_probabilities = torch.from_numpy(served).float()
    temperature = fit_temperature(out_of_fold_probabilities, labels)
    confidence, predicted = temper(out_of_fold_probabilities, temperature).max(dim=-1)
    report = classification_report(labels, predicted.tolist(), spec.labels, confidence.tolist())
    cross_validation["report"] = {k: report[k] for k in ("examples", "accuracy", "accuracy_ci95", "macro_f1", "ece")}
    if validation is None:
        sets, probabilities = replace(sets, validation=sets.train), out_of_fold_probabilities
    else:
        probabilities = torch.from_numpy(validation).float()
    return write_training_record(
        out_dir,
        spec,
        recipe,
        sets,
        temper(probabilities, temperature),
        max_steps=None,
        train_seconds=time.perf_counter() - started,
        device="cpu",
        evaluation="cross-validation" if validation is None else "validation split",
        cross_validation=cross_validation,
        serving={**serving, "temperature": temperature},
        calibration=calibration_record(probabilities, [ex.label for ex in sets.validation], temperature),
        **extra,
    )


# --- text ----------------------------------------------------------------------------------------------------


def embed_texts(
    encoder: TextEncoder, model: Any, texts: list[str], recipe: TextHeadsRecipe, task: str = ""
) -> np.ndarray:
    """(texts, dims) L2-normalised mean-pooled embeddings, encoded exactly as the handler serves; the steps are
    reported as `task`'s when one is named."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), EMBED_BATCH):
            if task:
                progress().step(task, start, len(texts))
            batch = encoder.encode(texts[start : start + EMBED_BATCH], recipe.max_length, recipe.head_tokens)
            hidden = model(**batch).last_hidden_state
            out.append(mean_pooled(hidden, batch["attention_mask"]).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def _tfidf_baseline(texts: list[str], labels: np.ndarray, folds: np.ndarray, classes: int) -> Choice:
    """TF-IDF word 1-2 grams + logistic regression, its penalty chosen out of fold the same way: the simple
    baseline a served text model must beat, on the same rows."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    def fit_predict(c: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        def run(train: np.ndarray, held_out: np.ndarray) -> np.ndarray:
            vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
            matrix = vectorizer.fit_transform([texts[i] for i in train])
            model = _sparse_logistic(matrix, labels[train], c)
            return model.predict_proba(vectorizer.transform([texts[i] for i in held_out]))

        return run

    return choose({c: out_of_fold(folds, classes, fit_predict(c)) for c in (1.0, 10.0, 100.0)}, labels)


def train_text_heads(
    spec: TextTask, recipe: TextHeadsRecipe, data_root: Path, out_dir: Path, *, seed: int = 13, **sizes: Any
) -> dict[str, Any]:
    """Cross-validate and fit the linear member and (when it earns its cost) the frozen encoder's head; save
    what the handler loads and the training record."""
    started = time.perf_counter()
    torch.set_num_threads(os.cpu_count() or 1)
    sets = heads_sets(spec, recipe, data_root, seed, sizes)
    normalise = NORMALISERS[spec.text.normalise]
    texts = [normalise(ex.text) for ex in sets.train]
    labels = np.array([ex.label for ex in sets.train])
    classes = len(spec.labels)
    folds = fold_ids(labels.tolist(), recipe.folds, seed)
    log_event(logger, "train.start", task=spec.task, recipe=recipe.model_dump(), rows=len(texts), folds=recipe.folds)

    features = feature_matrix(texts, DEFAULT_BITS, NGRAMS)

    def linear_fold(c: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        def run(train: np.ndarray, held_out: np.ndarray) -> np.ndarray:
            weight, bias = linear_weights(features[train], labels[train], classes, c)
            return linear_probabilities(features[held_out], weight, bias)

        return run

    linear = choose({c: out_of_fold(folds, classes, linear_fold(c)) for c in LINEAR_C}, labels)
    members: dict[str, Any] = {"linear": {**_cv_record(linear, labels), "c": linear.setting}}
    served, weight = linear.probabilities, 1.0
    encoder_choice: Choice | None = None
    embeddings = np.zeros((0, 0))
    tokenizer = encoder_model = None
    if recipe.encoder:
        from transformers import AutoModel, AutoTokenizer

        from modelops.train.text import resolve_checkpoint

        checkpoint = resolve_checkpoint(spec.base_checkpoint)
        tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        encoder_model = AutoModel.from_pretrained(checkpoint).eval()
        embed_started = time.perf_counter()
        encoder = TextEncoder(tokenizer.backend_tokenizer, tokenizer.pad_token_id)
        progress().stage(spec.task, "features")
        embeddings = embed_texts(encoder, encoder_model, texts, recipe, spec.task)
        embed_seconds = time.perf_counter() - embed_started

        def encoder_fold(c: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
            def run(train: np.ndarray, held_out: np.ndarray) -> np.ndarray:
                return _logistic(embeddings[train], labels[train], c).predict_proba(embeddings[held_out])

            return run

        encoder_choice = choose({c: out_of_fold(folds, classes, encoder_fold(c)) for c in ENCODER_C}, labels)
        members["encoder"] = {
            **_cv_record(encoder_choice, labels),
            "c": encoder_choice.setting,
            "embed_seconds": round(embed_seconds, 1),
        }
        blended = choose_blend(encoder_choice.probabilities, linear.probabilities, labels)
        vs_linear = paired(blended.probabilities, linear.probabilities, labels)
        earns = blended.setting < 1.0 and vs_linear["difference_ci95"][0] > 0
        members["encoder"]["earns_its_cost"] = earns
        members["blend_vs_linear"] = vs_linear
        if earns:
            served, weight = blended.probabilities, float(blended.setting)
    majority = np.zeros_like(served)
    majority[:, np.bincount(labels).argmax()] = 1.0
    baselines = {"majority_class": paired(served, majority, labels)}
    if recipe.baselines:
        tfidf = _tfidf_baseline(texts, labels, folds, classes)
        baselines["tfidf_logistic_regression"] = {"c": tfidf.setting, **paired(served, tfidf.probabilities, labels)}
    cross_validation = {
        "folds": recipe.folds,
        "rows": len(texts),
        "members": members,
        "linear_weight": weight,
        "encoder": "frozen" if weight < 1.0 else "none",
        "baselines": baselines,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    held_out = [normalise(ex.text) for ex in sets.validation]
    validation = np.zeros((len(held_out), classes))
    if weight > 0.0:  # the handler loads the linear member only when it has a weight
        linear_weight, linear_bias = linear_weights(features, labels, classes, float(linear.setting))
        member = LinearTextModel(DEFAULT_BITS, NGRAMS, torch.from_numpy(linear_weight), torch.from_numpy(linear_bias))
        member.save(out_dir)
        if held_out:
            validation += weight * member.predict_proba(held_out).numpy()
    if weight < 1.0 and encoder_choice is not None and encoder_model is not None and tokenizer is not None:
        fitted = _logistic(embeddings, labels, float(encoder_choice.setting))
        head_weight, head_bias = _full_weights(fitted, classes)
        encoder_model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
        save_head(out_dir, torch.from_numpy(head_weight), torch.from_numpy(head_bias))
        if held_out:
            encoder = TextEncoder(tokenizer.backend_tokenizer, tokenizer.pad_token_id)
            validation += (1 - weight) * fitted.predict_proba(embed_texts(encoder, encoder_model, held_out, recipe))
    serving = {"encoder": cross_validation["encoder"], "linear_weight": weight}
    return _record(
        out_dir, spec, recipe, sets, served, validation if held_out else None, started, cross_validation, serving
    )


# --- image ---------------------------------------------------------------------------------------------------


def pooled_features(
    model: Any, spec: ImageTask, examples: list[Example], flip: bool, report: bool = False
) -> np.ndarray:
    """(views, photos, dims) pooled backbone features of each photo's centre crop (and its mirror with `flip`),
    computed the way the handler prepares a photo."""
    from tqdm import tqdm

    from handlers.image_decode import decode
    from handlers.image_ops import to_model_input
    from modelops.train.image import trunk_forward

    views: list[list[np.ndarray]] = [[], []] if flip else [[]]
    if report:
        progress().stage(spec.task, "features")
    with torch.inference_mode(), tqdm(total=len(examples), desc=f"features {spec.task}", unit="img") as bar:
        for start in range(0, len(examples), 16):
            chunk = examples[start : start + 16]
            crops = torch.stack(
                [
                    to_model_input(decode(Path(ex.text).read_bytes()), spec.image.image_size, spec.image.resize_to)
                    for ex in chunk
                ]
            )
            for view, batch in zip(views, (crops, crops.flip(-1)), strict=False):
                x = trunk_forward(model, batch.to(memory_format=torch.channels_last), len(model._blocks))
                x = model._swish(model._bn1(model._conv_head(x)))
                view.append(model._avg_pooling(x).flatten(1).numpy())
            bar.update(len(chunk))
            if report:
                progress().step(spec.task, start + len(chunk), len(examples))
    return np.stack([np.concatenate(view) for view in views])


def train_image_heads(
    spec: ImageTask, recipe: ImageHeadsRecipe, data_root: Path, out_dir: Path, *, seed: int = 13, **sizes: Any
) -> dict[str, Any]:
    """Cross-validate and fit a logistic regression on the frozen backbone's pooled features; save the backbone
    with it as its classifier layer, and the training record."""
    from safetensors.torch import save_file

    from modelops.train.image import build_model

    started = time.perf_counter()
    torch.set_num_threads(os.cpu_count() or 1)
    sets = heads_sets(spec, recipe, data_root, seed, sizes)
    labels = np.array([ex.label for ex in sets.train])
    classes = len(spec.labels)
    folds = fold_ids(labels.tolist(), recipe.folds, seed)
    log_event(logger, "train.start", task=spec.task, recipe=recipe.model_dump(), rows=len(labels), folds=recipe.folds)
    model = build_model(spec).to(memory_format=torch.channels_last).eval()
    views = pooled_features(model, spec, sets.train, recipe.tta_flip, report=True)
    feature_seconds = time.perf_counter() - started
    mean, scale = views[0].mean(axis=0), views[0].std(axis=0) + 1e-6
    standard = (views - mean) / scale

    def fold(c: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        def run(train: np.ndarray, held_out: np.ndarray) -> np.ndarray:
            fitted = _logistic(np.concatenate(standard[:, train]), np.tile(labels[train], len(standard)), c)
            return np.mean([fitted.predict_proba(view[held_out]) for view in standard], axis=0)

        return run

    head = choose({c: out_of_fold(folds, classes, fold(c)) for c in IMAGE_C}, labels)
    majority = np.zeros_like(head.probabilities)
    majority[:, np.bincount(labels).argmax()] = 1.0
    cross_validation = {
        "folds": recipe.folds,
        "rows": len(labels),
        "members": {"head": {**_cv_record(head, labels), "c": head.setting}},
        "feature_seconds": round(feature_seconds, 1),
        "baselines": {"majority_class": paired(head.probabilities, majority, labels)},
    }
    fitted = _logistic(np.concatenate(standard), np.tile(labels, len(standard)), float(head.setting))
    weight, bias = _full_weights(fitted, classes)
    validation = None
    if sets.validation:
        held_out = (pooled_features(model, spec, sets.validation, recipe.tta_flip) - mean) / scale
        validation = np.mean([fitted.predict_proba(view) for view in held_out], axis=0)
    # the standardisation folded into the layer: w . (x - mean) / scale + b = (w / scale) . x + (b - w . mean / scale)
    with torch.no_grad():
        model._fc.weight.copy_(torch.from_numpy(weight / scale))
        model._fc.bias.copy_(torch.from_numpy(bias - (weight / scale) @ mean))
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous().cpu() for k, v in model.state_dict().items()}, str(out_dir / "model.safetensors"))
    return _record(
        out_dir,
        spec,
        recipe,
        sets,
        head.probabilities,
        validation,
        started,
        cross_validation,
        {},
        architecture=spec.image.architecture,
    )
