"""The optimised serving runtimes (models.toml `runtime`): what packaging recorded and decided, and that the
ONNX Runtime path answers like the fp32 torch model it was exported from, through the served handler class."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from bench.measure import sample
from contract.model_card import read_model_card
from modelops.package.archive import package
from modelops.train.data import data_dir, load_split, validation_sample
from modelops.train.evaluate import Timer, handler_rows, load_handler, predict_via
from modelops.train.metrics import classification_report
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
    # decided on rows training did not fit (a setting), reported on validation: a blend of both members on its
    # blend rows, anything else on the dev slice
    blended = 0.0 < card["serving"].get("linear_weight", 0.0) < 1.0
    assert runtime["decided_on"] == ("blend rows" if blended else "dev")
    judged = card["blend"]["rows"] if blended else card["data"]["dev_examples_used"]
    assert variant["judged_examples"] == judged > 0
    fp32 = runtime["variants"]["torch"]["judged_accuracy"]
    assert variant["judged_accuracy_drop"] == pytest.approx(fp32 - variant["judged_accuracy"], abs=1e-4)
    # the test build keeps every variant (conftest: variant_max_drop=1.0); the rule itself is checked below
    assert runtime["max_accuracy_drop"] == 1.0
    assert runtime["served"] == spec.runtime
    with zipfile.ZipFile(archive) as zf:
        assert "model.onnx" in zf.namelist()
        # the handlers import the contract they stand on from the archive itself: TorchServe's worker has no repo
        assert {"contract/serving.py", "contract/wire.py", "handlers/classifier_base.py"} <= set(zf.namelist())
        assert json.loads(zf.read("task.json"))["runtime"] == runtime["served"]


@pytest.mark.parametrize("task", ["sentiment", "disaster"])
def test_the_card_gives_the_figures_callers_see(live_stack: Stack, task: str) -> None:
    """The served variant's validation figures in the card (the UI's Status page shows them) are those of the
    answers the gateway gives on the same validation examples: int8 moves scores a little and can flip a label,
    so the fp32 model's `validation` and `calibration` are not what users get."""
    spec = live_stack.catalog[task]
    card = read_model_card(live_stack.archives[task])
    data = card["data"]
    split = load_split(spec, data_dir(), seed=int(data["seed"]))
    examples = validation_sample(split, int(data["validation_examples_used"]), int(data["seed"]))
    answered = predict_via(spec, live_stack.gateway, examples, 8, Timer())
    seen = classification_report([ex.label for ex in examples], answered.labels, spec.labels, answered.scores)
    served = card["runtime"]["variants"][card["runtime"]["served"]]
    assert served["accuracy"] == seen["accuracy"]
    assert served["ece"] == pytest.approx(seen["ece"], abs=1e-3)  # int8 answers vary in their last digits
    assert (served["confusion"], served["per_class"], served["macro_f1"]) == (
        seen["confusion"],
        seen["per_class"],
        seen["macro_f1"],
    )
    assert served["accuracy_ci95"][0] <= served["accuracy"] <= served["accuracy_ci95"][1]


def test_a_variant_losing_more_than_the_limit_is_refused(live_stack: Stack, tmp_path: Path) -> None:
    """The same tiny model packaged again with a limit below zero: no variant can meet it on the dev slice, so
    the archive serves fp32 torch, drops model.onnx and says why."""
    spec = live_stack.catalog["disaster"]
    trained = live_stack.archives[spec.task].parent / "model"  # build_archive trains beside the archive
    archive = package(spec, trained, tmp_path, data_dir(), variant_max_drop=-1.0)
    runtime = read_model_card(archive)["runtime"]
    assert runtime["served"] == "torch"
    assert "loses" in runtime["reason"]
    with zipfile.ZipFile(archive) as zf:
        assert "model.onnx" not in zf.namelist()
        assert json.loads(zf.read("task.json"))["runtime"] == "torch"


@pytest.mark.parametrize("task", TASKS)
def test_onnx_runtime_answers_like_the_fp32_model(live_stack: Stack, task: str, tmp_path: Path) -> None:
    spec = live_stack.catalog[task]
    with zipfile.ZipFile(live_stack.archives[task]) as zf:
        zf.extractall(tmp_path)
    rows = handler_rows(spec, sample(spec, 6))
    fp32 = load_handler(spec, tmp_path, {"runtime": "torch"})
    expected = fp32.infer(fp32.preprocess(rows)[0])
    optimised = load_handler(spec, tmp_path, {"runtime": spec.runtime})
    assert optimised.config.runtime == spec.runtime
    answered = optimised.infer(optimised.preprocess(rows)[0])
    largest = max(
        abs(a - b) for want, got in zip(expected, answered, strict=True) for a, b in zip(want, got, strict=True)
    )
    # fp32 graphs agree to rounding; int8 weights move probabilities a little
    assert largest < (1e-3 if spec.runtime == "onnx" else 0.05)
