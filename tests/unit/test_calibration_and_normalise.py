"""Temperature scaling (scores move, the winning label never does), its fit, the calibration error, the
accuracy interval, and the tweet normalisation shared by training and the handler."""

from __future__ import annotations

from typing import get_args

import pytest
import torch

from contract.catalog import Normalisation
from handlers.calibration import temper
from handlers.text_normalise import NORMALISERS, normalise_tweet
from modelops.train.calibrate import expected_calibration_error, fit_temperature
from modelops.train.metrics import bootstrap_interval, classification_report, paired_difference_interval


def test_temperature_changes_scores_but_never_the_argmax() -> None:
    probabilities = torch.tensor([[0.9, 0.1], [0.3, 0.7], [0.55, 0.45]])
    for t in (0.5, 2.0, 3.0):
        tempered = temper(probabilities, t)
        assert torch.equal(tempered.argmax(-1), probabilities.argmax(-1))
        assert torch.allclose(tempered.sum(-1), torch.ones(len(probabilities)))
        assert not torch.allclose(tempered, probabilities)
    assert torch.equal(temper(probabilities, 1.0), probabilities)
    # above 1 softens, below 1 sharpens
    assert temper(probabilities, 2.0).max() < probabilities.max() < temper(probabilities, 0.5).max()


def test_fit_temperature_softens_an_overconfident_model() -> None:
    # always 0.99 sure, right 70% of the time: the NLL-optimal temperature is well above 1
    labels = [0] * 280 + [1] * 120
    probabilities = torch.tensor([[0.99, 0.01]] * 400)
    t = fit_temperature(probabilities, labels)
    assert t > 2.0
    confidence = temper(probabilities, t).max(-1).values[0].item()
    assert confidence == pytest.approx(0.7, abs=0.03)
    assert fit_temperature(probabilities, []) == 1.0


def test_expected_calibration_error() -> None:
    assert expected_calibration_error([0.9] * 10, [True] * 9 + [False]) == pytest.approx(0.0)
    assert expected_calibration_error([1.0] * 4, [True, True, False, False]) == pytest.approx(0.5)
    report = classification_report([0, 1], [0, 0], ["a", "b"], confidences=[0.8, 0.6])
    assert report["ece"] == pytest.approx(0.5 * abs(0.8 - 1) + 0.5 * abs(0.6 - 0))


def test_bootstrap_interval_brackets_the_accuracy_and_narrows_with_more_examples() -> None:
    hits = [True] * 90 + [False] * 10
    low, high = bootstrap_interval(hits)
    assert low < 0.9 < high
    wide = high - low
    low, high = bootstrap_interval(hits * 10)
    assert low < 0.9 < high
    assert high - low < wide / 2
    assert bootstrap_interval(hits) == bootstrap_interval(hits)  # seeded
    assert classification_report([0, 1, 1], [0, 1, 0], ["a", "b"])["accuracy_ci95"][0] <= 2 / 3


def test_paired_difference_is_narrower_than_either_accuracy_and_zero_for_one_model() -> None:
    # two models right on the same 880 of 1,000 rows; the first also on 20 of the second's 40 other mistakes
    first = [True] * 880 + [True] * 20 + [False] * 100
    second = [True] * 880 + [False] * 20 + [False] * 100
    low, high = paired_difference_interval(first, second)
    assert 0 < low < 0.02 < high < 0.04  # +2 points, clearly above zero
    first_low, first_high = bootstrap_interval(first)
    assert high - low < (first_high - first_low) / 2  # far narrower than an accuracy's interval
    assert first_low < bootstrap_interval(second)[1]  # the two accuracies' intervals overlap
    assert paired_difference_interval(first, first) == [0.0, 0.0]
    with pytest.raises(ValueError, match="same examples"):
        paired_difference_interval(first, second[:-1])


def test_tweet_normalisation_repairs_and_replaces() -> None:
    raw = "@bbc Forest fire \x89Û_ it\x89Ûªs bad åÊnow &amp;amp; #OtleyHour #fire http://t.co/GKYe6gjTk5"
    assert normalise_tweet(raw) == "@user Forest fire … it's bad now & Otley Hour fire http"
    # tweets that differ only in their link or account become one tweet
    assert normalise_tweet("Fire at @abc http://t.co/x") == normalise_tweet("Fire at @xyz https://t.co/y")


def test_tweet_normalisation_is_idempotent() -> None:
    for text in ["#A &lt;b&gt; @user http", "x \x89ÛÓ y \x89Û\x9d", "plain text", "Ì© café"]:
        once = normalise_tweet(text)
        assert normalise_tweet(once) == once


def test_every_catalog_normalisation_has_a_function() -> None:
    assert set(NORMALISERS) == set(get_args(Normalisation))
    assert NORMALISERS["none"]("  kept  as is ") == "  kept  as is "
