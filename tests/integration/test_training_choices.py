"""What training chose and recorded, checked on the test stack's real archives: the extra dataset read, the
shared tweet normalisation, the temperature (scores move, labels do not), the device, the accuracy interval
and calibration figures in the card."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch

from bench.measure import sample
from contract.catalog import TextRecipe
from contract.model_card import read_model_card
from handlers.text_normalise import NORMALISERS
from modelops.tools import file_sha256
from modelops.train.data import data_dir
from modelops.train.device import training_device
from modelops.train.evaluate import handler_rows, open_handler
from tests.conftest import Stack

pytestmark = pytest.mark.integration


def test_the_sentiment_card_names_the_extra_dataset_it_trained_on(live_stack: Stack) -> None:
    card = read_model_card(live_stack.archives["sentiment"])
    extra = card["data"]["extra_datasets"]["imdb/reviews_extra.csv"]
    assert extra["rows_read"] == 16817  # the whole file (../shared/data/README.md)
    assert extra["train_examples"] == 16817  # none of it equals a dev or validation review
    assert extra["sha256"] == file_sha256(data_dir() / "imdb" / "reviews_extra.csv")
    assert card["members"]["linear"]["rows"] == card["data"]["train_examples_used"]


def test_the_handler_normalises_tweets_exactly_as_training_did(live_stack: Stack) -> None:
    spec = live_stack.catalog["disaster"]
    raw = "@bbc Forest fire \x89Û_ near La Ronge &amp; #WildFire http://t.co/abc123"
    with open_handler(spec, live_stack.archives["disaster"]) as handler:
        assert handler.normalise is NORMALISERS[spec.text.normalise] is NORMALISERS["tweet"]
        as_raw, as_trained = handler.infer([raw, NORMALISERS["tweet"](raw)])
    assert as_raw == as_trained


@pytest.mark.parametrize("task", ["disaster", "pose"])
def test_the_temperature_moves_scores_but_never_the_label(live_stack: Stack, task: str) -> None:
    spec = live_stack.catalog[task]
    archive = live_stack.archives[task]
    with zipfile.ZipFile(archive) as zf:
        served = json.loads(zf.read("task.json"))
    card = read_model_card(archive)
    assert served["temperature"] == card["serving"]["temperature"] == card["calibration"]["temperature"]
    rows = handler_rows(spec, sample(spec, 6))
    answers = {}
    for temperature in (1.0, 2.5):
        with open_handler(spec, archive, {"temperature": temperature}) as handler:
            answers[temperature] = torch.tensor(handler.infer(handler.preprocess(rows)[0]))
    assert torch.equal(answers[1.0].argmax(-1), answers[2.5].argmax(-1))
    assert answers[2.5].max() < answers[1.0].max()  # a higher temperature is less sure


@pytest.mark.parametrize("task", ["sentiment", "disaster"])
def test_the_blend_is_chosen_on_rows_no_member_trained_on_and_never_loses_to_a_member(
    live_stack: Stack, task: str
) -> None:
    card = read_model_card(live_stack.archives[task])
    recipe = live_stack.catalog[task].recipe(card["recipe"]["name"])
    assert isinstance(recipe, TextRecipe)
    blend = card["blend"]
    assert blend["dev_rows"] == card["data"]["dev_examples_used"] > 0
    assert blend["rows"] == blend["dev_rows"] + blend["unseen_training_rows"]
    # sentiment `fast` trains its encoder on a fraction of an epoch, so rows it never saw join the dev slice;
    # disaster `full` (3 epochs) sees every row, so the dev slice alone chooses
    assert (blend["unseen_training_rows"] == 40) if recipe.epochs < 1 else (blend["unseen_training_rows"] == 0)
    assert blend["linear_weight"] == card["serving"]["linear_weight"]
    assert blend["accuracy"] >= max(blend["vs_encoder"]["accuracy"], blend["vs_linear"]["accuracy"])
    assert f"2**{recipe.linear_bits} buckets" in card["members"]["linear"]["features"]
    assert card["members"]["linear"]["c"] == recipe.linear_c


@pytest.mark.parametrize("task", ["sentiment", "disaster", "pose"])
def test_the_card_records_device_interval_and_calibration(live_stack: Stack, task: str) -> None:
    card = read_model_card(live_stack.archives[task])
    assert card["device"] == training_device() == "cpu"  # CI and this machine have no GPU
    low, high = card["validation"]["accuracy_ci95"]
    assert low <= card["validation"]["accuracy"] <= high
    assert 0 <= card["validation"]["ece"] <= 1
    assert set(card["calibration"]) == {"temperature", "ece_before", "ece_after"}
