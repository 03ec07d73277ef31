"""The TF-IDF blend member: features, fitting, persistence, blending (no TorchServe, no encoder)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tfidf import TfidfClassifier, blend, term_counts

from modelops.tfidf_fit import build_vocabulary, fit_tfidf

POSITIVE = ["a wonderful film", "wonderful acting and a great story", "great fun, truly wonderful", "great cast"]
NEGATIVE = ["a dull film", "dull acting and a boring story", "boring, truly dull", "boring plot"]


def test_term_counts_are_lowercased_words_and_pairs_without_markup() -> None:
    counts = term_counts("Great film!<br /><br />Great FILM a")
    assert counts["great"] == 2
    assert counts["great film"] == 2
    assert counts["film great"] == 1
    assert "br" not in counts
    assert "a" not in counts  # single characters are not words


def test_vocabulary_keeps_terms_seen_in_min_df_texts_with_smoothed_idf() -> None:
    vocabulary, idf = build_vocabulary(["good movie", "good plot", "bad"], min_df=2)
    assert list(vocabulary) == ["good"]
    assert idf.tolist() == pytest.approx([torch.log(torch.tensor(4 / 3)).item() + 1.0])


def test_feature_rows_have_unit_length_and_unknown_text_is_all_zero() -> None:
    vocabulary, idf = build_vocabulary(POSITIVE + NEGATIVE, min_df=1)
    model = TfidfClassifier(vocabulary, idf, torch.zeros(len(vocabulary), 2), torch.zeros(2))
    dense = model.features(["wonderful wonderful story", "zzz qqq"]).to_dense()
    assert dense[0].norm().item() == pytest.approx(1.0)
    assert dense[1].abs().sum().item() == 0.0


def test_fit_separates_the_classes_picks_c_on_dev_and_survives_a_save(tmp_path: Path) -> None:
    labels = [1] * len(POSITIVE) + [0] * len(NEGATIVE)
    model, record = fit_tfidf(POSITIVE + NEGATIVE, labels, ["wonderful story", "boring film"], [1, 0], 2, min_df=1)
    assert record["dev_accuracy"] == 1.0
    assert record["c"] in (4.0, 16.0, 64.0)
    probabilities = model.predict_proba(["truly wonderful", "truly boring"])
    assert probabilities.argmax(-1).tolist() == [1, 0]
    model.save(tmp_path)
    reloaded = TfidfClassifier.load(tmp_path)
    assert torch.allclose(reloaded.predict_proba(["truly wonderful", "truly boring"]), probabilities)


def test_blend_is_the_weighted_mean_of_the_members() -> None:
    encoder = torch.tensor([[0.9, 0.1]])
    tfidf = torch.tensor([[0.3, 0.7]])
    assert torch.allclose(blend(encoder, tfidf, 0.5), torch.tensor([[0.6, 0.4]]))
    assert torch.equal(blend(encoder, tfidf, 0.0), encoder)
