"""The linear blend member: terms, hashing, NB-weighted fitting, persistence, blending (no TorchServe)."""

from __future__ import annotations

from bisect import bisect_left
from pathlib import Path

import numpy as np
import pytest
import torch

from handlers.linear import LinearTextModel, blend, buckets, terms, token_spans
from handlers.word_occlusion import without, words_of
from modelops.train.linear_fit import NGRAMS, describe, feature_matrix, fit_linear, log_count_ratio

POSITIVE = ["a wonderful film", "wonderful acting and a great story", "great fun, truly wonderful", "great cast"]
NEGATIVE = ["a dull film", "dull acting and a boring story", "boring, truly dull", "boring plot"]


def test_terms_are_distinct_lowercased_words_and_pairs_without_markup() -> None:
    found = terms("Great film!<br /><br />Great FILM, don't", ngrams=2)
    assert {"great", "film", "!", "don't", "great film", "film !", "! great"} <= found
    assert "br" not in found
    assert "don" not in found  # the apostrophe stays inside the word


def test_buckets_are_stable_distinct_and_in_range() -> None:
    first = buckets("a great great film", bits=10, ngrams=2)
    assert first == buckets("A great GREAT film", bits=10, ngrams=2)  # the same on every machine and process
    assert first == sorted(set(first))
    assert all(0 <= b < 1024 for b in first)


def test_log_count_ratio_favours_the_terms_of_the_positive_rows() -> None:
    texts = POSITIVE + NEGATIVE
    features = feature_matrix(texts, bits=12, ngrams=1)
    positive = torch.tensor([1] * 4 + [0] * 4).bool().numpy()
    ratio = log_count_ratio(features, positive)
    (wonderful,) = buckets("wonderful", 12, 1)
    (boring,) = buckets("boring", 12, 1)
    assert ratio[wonderful] > 0 > ratio[boring]


def _fit(texts: list[str], labels: list[int], classes: int, bits: int = 16) -> LinearTextModel:
    return fit_linear(feature_matrix(texts, bits, NGRAMS), np.array(labels), classes, bits, 1.0)


def test_fit_separates_the_classes_and_survives_a_save(tmp_path: Path) -> None:
    labels = [1] * len(POSITIVE) + [0] * len(NEGATIVE)
    model = _fit(POSITIVE + NEGATIVE, labels, 2, bits=14)
    assert (model.bits, model.ngrams) == (14, NGRAMS)
    assert describe(14, 1.0, 8)["features"] == "binary word 1-2 grams hashed into 2**14 buckets, NB log-count ratio"
    probabilities = model.predict_proba(["truly wonderful", "truly boring"])
    assert probabilities.argmax(-1).tolist() == [1, 0]
    # two classes: one model, class 0's logit is the reference
    assert torch.count_nonzero(model.weight[:, 0]) == 0
    assert model.bias[0] == 0
    model.save(tmp_path)
    reloaded = LinearTextModel.load(tmp_path)
    assert (reloaded.bits, reloaded.ngrams) == (model.bits, model.ngrams)
    assert torch.allclose(reloaded.predict_proba(["truly wonderful", "truly boring"]), probabilities)


def test_a_text_s_logits_are_the_bias_plus_its_buckets_weights() -> None:
    weight = torch.arange(16 * 2, dtype=torch.float32).view(16, 2)
    model = LinearTextModel(4, 1, weight, torch.tensor([0.5, -0.5]))
    idx = buckets("good good film", 4, 1)
    assert torch.allclose(model.logits(["good good film"])[0], weight[idx].sum(0) + torch.tensor([0.5, -0.5]))
    assert model.logits([]).shape == (0, 2)


def test_more_than_two_classes_are_fitted_one_against_the_rest() -> None:
    texts = ["red apple", "red cherry", "green leaf", "green grass", "blue sky", "blue sea"]
    model = _fit(texts, [0, 0, 1, 1, 2, 2], 3)
    assert model.predict_proba(["red red", "green", "blue sky"]).argmax(-1).tolist() == [0, 1, 2]


def test_blend_is_the_weighted_mean_of_the_members() -> None:
    encoder = torch.tensor([[0.9, 0.1]])
    linear = torch.tensor([[0.3, 0.7]])
    assert torch.allclose(blend(encoder, linear, 0.5), torch.tensor([[0.6, 0.4]]))
    assert torch.equal(blend(encoder, linear, 0.0), encoder)


@pytest.mark.parametrize("ngrams", [1, 2, 3])
def test_deletion_logits_equal_re_reading_the_text_without_the_words(ngrams: int) -> None:
    """The fast removal arithmetic gives exactly the logits of the shortened text, collisions included (a
    tiny 2**6-bucket table makes them common)."""
    generator = torch.Generator().manual_seed(ngrams)
    model = LinearTextModel(bits=6, ngrams=ngrams, weight=torch.randn(64, 2, generator=generator), bias=torch.zeros(2))
    text = "Good film!<br /><br />the plot, the plot... and a good good cast -- not bad at all? Good."
    chunks = words_of(text)
    tokens = token_spans(text)
    starts = [start for start, _, _ in tokens]
    removals = [[w] for w in chunks] + [chunks[2:5], chunks[-3:], chunks[:1]]
    ranges = [(bisect_left(starts, ws[0].start), bisect_left(starts, ws[-1].end)) for ws in removals]
    fast = model.deletion_logits([t for _, _, t in tokens], ranges)
    slow = model.logits([without(text, ws) for ws in removals])
    assert torch.allclose(fast, slow, atol=1e-5)
