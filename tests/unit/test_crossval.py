"""Cross-validation as the heads recipes use it: stratified folds, out-of-fold predictions from models that
never saw the row, and choices that never lose accuracy to a simpler candidate on the folds."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from modelops.train.blend import choose_blend
from modelops.train.crossval import accuracy, choose, fold_ids, held_out_probabilities, out_of_fold, paired


def test_folds_keep_label_shares_and_hold_every_row_out_once() -> None:
    labels = [0] * 40 + [1] * 10
    folds = fold_ids(labels, 5, seed=1)
    assert sorted(np.bincount(folds)) == [10] * 5
    for fold in range(5):
        held = [labels[i] for i in np.flatnonzero(folds == fold)]
        assert held.count(1) == 2  # 10 ones over 5 folds


def test_out_of_fold_predictions_come_from_models_that_never_saw_the_row() -> None:
    folds = fold_ids([0, 1] * 10, 5, seed=0)
    seen: list[set[int]] = []

    def fit_predict(train: np.ndarray, held_out: np.ndarray) -> np.ndarray:
        assert not set(train) & set(held_out)
        seen.append(set(held_out))
        return np.tile([0.25, 0.75], (len(held_out), 1))

    probabilities = out_of_fold(folds, 2, fit_predict)
    assert set().union(*seen) == set(range(20))
    assert probabilities.shape == (20, 2)


def test_held_out_rows_are_scored_by_fits_without_them_each_leaving_out_a_small_share() -> None:
    pool = np.arange(0, 100, 2)  # 50 of 100 training rows: parts of at most 15 rows, so 4 fits
    extra = np.array([100, 101])  # the dev rows, after the training rows
    fits: list[tuple[set[int], set[int]]] = []

    def fit_predict(fit: np.ndarray, scored: np.ndarray) -> np.ndarray:
        fits.append((set(fit.tolist()), set(scored.tolist())))
        return np.stack([scored, -scored], axis=1).astype(float)  # each row's answer names the row

    probabilities = held_out_probabilities(100, pool, extra, fit_predict)
    assert probabilities[:, 0].tolist() == [*pool.tolist(), 100, 101]  # pool order, then the extra rows
    assert len(fits) == 4
    for fit, scored in fits:
        assert not fit & scored
        assert fit | scored >= set(range(100))
        assert len(fit) >= 85
        assert max(fit) < 100
    assert extra.tolist() == sorted(set(fits[0][1]) - set(pool.tolist()))
    assert held_out_probabilities(10, np.array([], dtype=int), extra, fit_predict).shape == (2, 2)
    assert fits[-1][0] == set(range(10))  # no pool: one fit on every training row scores the extra rows


def test_choose_prefers_the_lower_log_loss_among_the_most_accurate() -> None:
    labels = np.array([0, 1, 1, 0])
    sharp = np.array([[0.9, 0.1], [0.1, 0.9], [0.2, 0.8], [0.8, 0.2]])
    timid = np.array([[0.6, 0.4], [0.4, 0.6], [0.45, 0.55], [0.55, 0.45]])
    wrong = np.array([[0.1, 0.9], [0.9, 0.1], [0.8, 0.2], [0.2, 0.8]])
    assert choose({"timid": timid, "sharp": sharp, "wrong": wrong}, labels).setting == "sharp"


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=2, max_value=4))
def test_the_chosen_blend_is_never_worse_than_its_best_member_on_the_folds(seed: int, classes: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, 60)
    linear, encoder = (rng.dirichlet(np.ones(classes), 60) for _ in range(2))
    best = max(accuracy(linear, labels), accuracy(encoder, labels))
    chosen = choose_blend(encoder, linear, labels)
    assert accuracy(chosen.probabilities, labels) >= best
    assert np.allclose(chosen.probabilities, (1 - chosen.setting) * encoder + chosen.setting * linear)


def test_a_paired_difference_reports_the_other_model_and_the_interval() -> None:
    labels = np.array([0, 1] * 50)
    right = np.eye(2)[labels]
    half = np.eye(2)[np.where(np.arange(100) < 50, labels, 1 - labels)]
    figures = paired(right, half, labels)
    assert (figures["accuracy"], figures["difference"]) == (0.5, 0.5)
    assert 0.35 < figures["difference_ci95"][0] <= figures["difference_ci95"][1] < 0.65
