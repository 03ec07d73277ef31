"""The optimised serving variant of a model: exported to ONNX at package time, checked, then kept or refused.

Why ONNX Runtime: on this class of CPU (AVX2, no VNNI) it runs EfficientNet-Lite about 3x faster than eager
torch in fp32, and MiniLM 1.7-2.4x with int8 dynamic quantisation of its MatMul weights
once its attention, GELU and layer norms are fused (transformer optimizer). A variant is served only when its
dev-slice accuracy is within MAX_ACCURACY_DROP of the fp32 model's; the model card records both, and both
runtimes' validation accuracy, either way.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contract.catalog import MAX_ACCURACY_DROP, CatalogError, TaskSpec
from contract.logs import log_event
from handlers.pooled_encoder import PooledClassifier
from modelops.train.blend import ScoredRows, blend_arrays
from modelops.train.crossval import accuracy
from modelops.train.data import Example, carve_dev, load_split, stratified_sample, training_sets, validation_sample
from modelops.train.evaluate import Timer, handler_probabilities, load_handler, predict_with
from modelops.train.metrics import classification_report

logger = logging.getLogger(__name__)

OPSET = 17
# The TorchScript exporter (`dynamo=False`, deprecated since torch 2.9 and still in 2.13): the torch.export-based
# one needs onnxscript (not installed), and the fusion and speed-ups above were measured on this one's graphs.


def _export_text(handler: Any, raw: Path, fused: Path) -> None:
    """The text model's fp32 forward pass (`TextClassifier.torch_logits`: a fine-tuned classifier, or a frozen
    encoder with its head) -> ONNX with dynamic batch and sequence axes, then ORT's BERT fusions.

    Eager attention is exported (not SDPA) because the optimizer recognises its pattern and fuses it into one
    Attention kernel; the exported graph computes the same function.
    """
    from onnxruntime.transformers import optimizer

    transformer: Any = handler.model.encoder if isinstance(handler.model, PooledClassifier) else handler.model
    transformer.set_attn_implementation("eager")
    sample = handler.encoder.encode(["an example", "a second, longer example text"], 32, None)

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = handler.model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            logits: torch.Tensor = handler.torch_logits(input_ids, attention_mask)
            return logits

    axes = {0: "batch", 1: "tokens"}
    torch.onnx.export(
        Logits().eval(),
        (sample["input_ids"], sample["attention_mask"]),
        str(raw),
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes={"input_ids": axes, "attention_mask": axes, "logits": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
    )
    config = transformer.config
    optimized = optimizer.optimize_model(
        str(raw), model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size
    )
    optimized.save_model_to_file(str(fused))


def _export_image(handler: Any, raw: Path, fused: Path) -> None:
    """EfficientNet-Lite -> ONNX with a dynamic batch axis; ORT fuses conv/BN/activation when it loads it."""
    size = handler.config.image_size
    sample = torch.zeros(2, 3, size, size)
    torch.onnx.export(
        handler.model.eval(),
        (sample,),
        str(raw),
        input_names=["pixels"],
        output_names=["logits"],
        dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
    )
    shutil.move(raw, fused)


# How each input kind's fp32 model is exported: (handler loaded with the torch runtime, raw path, fused path).
EXPORTERS: dict[str, Callable[[Any, Path, Path], None]] = {"text": _export_text, "image": _export_image}


def export(spec: TaskSpec, model_dir: Path, runtime: str) -> Path:
    """Write `model_dir/model.onnx` for `runtime` (`onnx` or `onnx-int8`) from the fp32 model in model_dir."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    handler = load_handler(spec, model_dir, {"runtime": "torch"})
    from handlers.ort_model import ONNX_FILE  # the handlers' own name for it; onnxruntime loads only here

    target = model_dir / ONNX_FILE
    with tempfile.TemporaryDirectory(prefix=f"onnx-{spec.task}-") as scratch:
        raw, fused = Path(scratch) / "raw.onnx", Path(scratch) / "fused.onnx"
        with warnings.catch_warnings():
            # the TorchScript exporter's deprecation notice and its tracer's notes on shape-dependent Python
            # branches, every export: the graphs are checked by accuracy before a variant is served (below)
            warnings.simplefilter("ignore")
            EXPORTERS[spec.kind](handler, raw, fused)
        if runtime == "onnx-int8":
            # int8 weights for the MatMul/Gemm layers, activations quantised per batch at run time. The fused
            # graph holds ORT-only ops, so shape inference cannot type every tensor: say they are float.
            logging.disable(logging.INFO)  # the quantiser logs a line per tensor on the root logger
            try:
                quantize_dynamic(fused, target, weight_type=QuantType.QInt8, extra_options={"DefaultTensorType": 1})
            finally:
                logging.disable(logging.NOTSET)
        else:
            shutil.move(fused, target)
    return target


def _report(handler: Any, spec: TaskSpec, examples: list[Example], timer: Timer) -> dict[str, Any]:
    """The classification report (calibration error of the tempered scores the handler answers included) on
    these examples."""
    predictions = predict_with(handler, spec, examples, spec.batch_size, timer)
    truth = [ex.label for ex in examples]
    return classification_report(truth, predictions.labels, spec.labels, predictions.scores)


def _accuracy(handler: Any, spec: TaskSpec, examples: list[Example], timer: Timer) -> float:
    return float(_report(handler, spec, examples, timer)["accuracy"])


# Rows a heads recipe's variant is judged on: a stratified sample of its training rows. Its final heads were fitted
# on them, so the accuracy there is not a generalisation figure; what is judged is what the variant changes.
VARIANT_JUDGING_ROWS = 500


def _judging_sets(spec: TaskSpec, training: dict[str, Any], data_root: Path) -> tuple[list[Example], list[Example]]:
    """The rows the variant is judged on and the rows its own figures are reported on: a fine-tuned model's dev
    slice and validation split; a heads model's training rows, and its validation split when it kept one."""
    data = training["data"]
    seed = int(data["seed"])
    if training["recipe"].get("method") == "heads":
        fraction = float(data["validation_fraction"])
        sets = training_sets(spec, data_root, seed, None, None, validation_fraction=fraction)
        return stratified_sample(sets.train, VARIANT_JUDGING_ROWS, seed), sets.validation
    split = load_split(spec, data_root, seed=seed)
    _, dev = carve_dev(split, int(data["dev_examples_used"]), seed)
    return dev, validation_sample(split, int(data["validation_examples_used"]), seed)


def _blend_rows_accuracy(spec: TaskSpec, model_dir: Path, runtime: str, scored: ScoredRows, weight: float) -> float:
    """The blend's accuracy on the scored blend rows with this runtime of the encoder: its probabilities (the
    handler with the linear member and the temperature off) blended with the linear member's held-out scores."""
    handler = load_handler(spec, model_dir, {"runtime": runtime, "linear_weight": 0.0, "temperature": 1.0})
    encoder = np.array(list(handler_probabilities(handler, spec, scored.examples, spec.batch_size, Timer())))
    return accuracy(blend_arrays(encoder, scored.linear, weight), scored.labels())


def _judge(
    spec: TaskSpec,
    model_dir: Path,
    training: dict[str, Any],
    dev: list[Example],
    requested: str,
    scored: ScoredRows | None,
) -> tuple[str, int, float, float]:
    """(what the variant was judged on, how many rows, fp32 accuracy there, the variant's): a blend on its scored
    blend rows, anything else on `dev` (`_judging_sets`)."""
    serving = training.get("serving", {})
    weight = float(serving.get("linear_weight", 0.0))
    if scored is not None and 0.0 < weight < 1.0:
        fp32 = accuracy(blend_arrays(scored.encoder, scored.linear, weight), scored.labels())
        variant = _blend_rows_accuracy(spec, model_dir, requested, scored, weight)
        return "blend rows", len(scored.examples), round(fp32, 4), round(variant, 4)
    if not dev:
        raise CatalogError(f"task {spec.task!r}: judging the {requested} variant needs a dev slice (dev_examples)")
    fp32 = _accuracy(load_handler(spec, model_dir, {"runtime": "torch"}), spec, dev, Timer())
    variant = _accuracy(load_handler(spec, model_dir, {"runtime": requested}), spec, dev, Timer())
    on = "training rows" if training["recipe"].get("method") == "heads" else "dev"
    return on, len(dev), fp32, variant


def choose_runtime(
    spec: TaskSpec,
    model_dir: Path,
    training: dict[str, Any],
    data_root: Path,
    max_drop: float = MAX_ACCURACY_DROP,
    scored: ScoredRows | None = None,
) -> dict[str, Any]:
    """Export the catalog's runtime for this model, compare it with the fp32 model on rows training did not fit
    on, and decide which runtime the archive serves. Returns the card's `runtime` section, which also
    reports the variant's own validation figures; the ONNX file is left in model_dir only if the variant is served.

    The decision is a setting, so it is taken like every other one, never on the validation split the card
    reports: a text blend on its blend rows (`scored`: the dev slice and the training rows its encoder never
    saw, with the linear member's held-out scores; 4,000 reviews for sentiment, where the dev slice alone
    cannot tell a 0.5-point loss from noise), another fine-tuned model on its dev slice, a heads recipe on its
    training rows. `max_drop` is the accuracy the variant may lose there. Builds of a few optimiser steps (the
    test suite's) pass 1.0: on a couple of dozen examples one flipped answer would otherwise decide which code
    path the tests run.
    """
    requested: str = training["recipe"].get("runtime") or spec.runtime
    section: dict[str, Any] = {
        "requested": requested,
        "served": "torch",
        "max_accuracy_drop": max_drop,
        "variants": {"torch": {"accuracy": float(training["validation"]["accuracy"])}},
    }
    if requested == "torch":
        return section
    if training.get("serving", {}).get("encoder") == "none":
        section["reason"] = "the linear member answers alone: no network to optimise"
        return section
    started = time.perf_counter()
    log_event(logger, "variant.export", task=spec.task, runtime=requested)
    onnx_file = export(spec, model_dir, requested)
    export_seconds = time.perf_counter() - started
    dev, validation = _judging_sets(spec, training, data_root)
    judging = _judge(spec, model_dir, training, dev, requested, scored)
    section["decided_on"], judged, fp32_dev, variant_dev = judging
    # as served: the settings training chose (the blend judging above switched the linear member off)
    handler = load_handler(spec, model_dir, {**training.get("serving", {}), "runtime": requested})
    timer = Timer()
    # the variant's own validation figures (accuracy with its interval, macro-F1, calibration error, per class,
    # confusion): when it is served, its answers are what callers get, so these are the figures they see (the
    # card's `validation` and `calibration` are the fp32 model's)
    report = _report(handler, spec, validation, timer) if validation else {}
    section["variants"]["torch"]["judged_accuracy"] = fp32_dev
    drop = round(fp32_dev - variant_dev, 4)
    kept = drop <= max_drop
    section["variants"][requested] = {
        **report,
        "judged_accuracy": variant_dev,
        "judged_accuracy_drop": drop,
        "judged_examples": judged,
        "bytes": onnx_file.stat().st_size,
        "export_seconds": round(export_seconds, 1),
        "eval_examples_per_s": timer.report(len(validation)).get("examples_per_s"),
    }
    if kept:
        section["served"] = requested
    else:
        onnx_file.unlink()
        judged_on = section["decided_on"]
        section["reason"] = f"{requested} loses {drop:.4f} accuracy on the {judged_on}; the limit is {max_drop}"
    log_event(
        logger,
        "variant.done",
        task=spec.task,
        runtime=requested,
        accuracy=report.get("accuracy"),
        judged_on=section["decided_on"],
        judged_accuracy=variant_dev,
        fp32_judged_accuracy=fp32_dev,
        served=section["served"],
        seconds=round(time.perf_counter() - started, 1),
    )
    return section
