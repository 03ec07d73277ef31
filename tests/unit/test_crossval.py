"""Cross-validation as the heads recipes use it: stratified folds, out-of-fold predictions from models that
never saw the row, and choices that never lose accuracy to a simpler candidate on the folds."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from modelops.train.crossval import accuracy, blend_grid, choose, fold_ids, out_of_fold, paired


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
    blends = {w: w * linear + (1 - w) * encoder for w in reversed(blend_grid())}
    assert accuracy(choose(blends, labels, floor=best).probabilities, labels) >= best


def test_a_paired_difference_reports_the_other_model_and_the_interval() -> None:
    labels = np.array([0, 1] * 50)
    right = np.eye(2)[labels]
    half = np.eye(2)[np.where(np.arange(100) < 50, labels, 1 - labels)]
    figures = paired(right, half, labels)
    assert (figures["accuracy"], figures["difference"]) == (0.5, 0.5)
    assert 0.35 < figures["difference_ci95"][0] <= figures["difference_ci95"][1] < 0.65
