"""The optimised serving runtimes (models.toml `runtime`): what packaging recorded and decided, and that the
ONNX Runtime path answers like the fp32 torch model it was exported from, through the served handler class."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from bench.__main__ import sample
from modelops.catalog import MAX_ACCURACY_DROP
from modelops.evaluate import handler_rows, load_handler
from modelops.export_onnx import export
from modelops.package import read_model_card
from tests.conftest import Stack

pytestmark = pytest.mark.integration

TASKS = ["sentiment", "disaster", "pose"]


@pytest.mark.parametrize("task", TASKS)
def test_card_records_both_runtimes_and_the_accuracy_rule_decides_what_is_served(live_stack: Stack, task: str) -> None:
    spec = live_stack.catalog[task]
    archive = live_stack.archives[task]
    card = read_model_card(archive)
    runtime = card["runtime"]
    assert runtime["requested"] == spec.runtime != "torch"
    assert runtime["variants"]["torch"]["accuracy"] == card["validation"]["accuracy"]
    variant = runtime["variants"][spec.runtime]
    assert variant["examples"] == card["data"]["validation_examples_used"]
    assert variant["accuracy_drop"] == pytest.approx(card["validation"]["accuracy"] - variant["accuracy"], abs=1e-4)
    kept = variant["accuracy_drop"] <= MAX_ACCURACY_DROP
    assert runtime["served"] == (spec.runtime if kept else "torch")
    assert kept or "loses" in runtime["reason"]
    with zipfile.ZipFile(archive) as zf:
        assert ("model.onnx" in zf.namelist()) == kept
        assert json.loads(zf.read("task.json"))["runtime"] == runtime["served"]


@pytest.mark.parametrize("task", TASKS)
def test_onnx_runtime_answers_like_the_fp32_model(live_stack: Stack, task: str, tmp_path: Path) -> None:
    spec = live_stack.catalog[task]
    with zipfile.ZipFile(live_stack.archives[task]) as zf:
        zf.extractall(tmp_path)
    if not (tmp_path / "model.onnx").exists():  # the variant was not kept (CI's two-step models): export it here
        export(spec, tmp_path, spec.runtime)
    rows = handler_rows(spec, sample(spec, 6))
    fp32 = load_handler(spec, tmp_path, {"runtime": "torch"})
    expected = fp32.infer(fp32.preprocess(rows)[0])
    optimised = load_handler(spec, tmp_path, {"runtime": spec.runtime})
    assert optimised.runtime == spec.runtime
    answered = optimised.infer(optimised.preprocess(rows)[0])
    largest = max(
        abs(a - b) for want, got in zip(expected, answered, strict=True) for a, b in zip(want, got, strict=True)
    )
    # fp32 graphs agree to rounding; int8 weights move probabilities a little
    assert largest < (1e-3 if spec.runtime == "onnx" else 0.05)
