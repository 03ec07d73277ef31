from __future__ import annotations

from pathlib import Path

import pytest

from contract.catalog import load_catalog
from modelops.train.data import Example, read_examples, stratified_sample, stratified_split, training_sets
from modelops.train.metrics import classification_report

# a text task reading `text,label` CSVs with labels a/b
SPEC = load_catalog()["sentiment"].model_copy(update={"labels": ("a", "b"), "extra_datasets": ()})


def test_duplicates_keep_the_majority_label_and_ties_are_dropped(tmp_path: Path) -> None:
    csv = tmp_path / "tweets.csv"
    csv.write_text(
        "id,keyword,location,text,target\n"
        '1,,,"fire, fire",1\n2,,,"fire, fire",1\n3,,,"fire, fire",0\n'
        "4,,,tie,1\n5,,,tie,0\n"
        '6,,,"two\nlines",0\n'
    )
    examples, rows = read_examples(load_catalog()["disaster"], csv)
    assert rows == 6
    assert examples == [Example("fire, fire", 1), Example("two\nlines", 0)]


def test_split_is_seeded_stratified_and_disjoint() -> None:
    examples = [Example(f"t{i}", i % 2) for i in range(100)]
    train, val = stratified_split(examples, 0.2, seed=3)
    assert (train, val) == stratified_split(examples, 0.2, seed=3)
    assert len(val) == 20
    assert sum(e.label for e in val) == 10
    assert not {e.text for e in train} & {e.text for e in val}
    sample = stratified_sample(train, 10, seed=3)
    assert len(sample) == 10
    assert sum(e.label for e in sample) == 5


def test_classification_report() -> None:
    report = classification_report([0, 0, 1, 1], [0, 1, 1, 1], ["a", "b"])
    assert report["accuracy"] == 0.75
    assert report["confusion"] == [[1, 1], [0, 2]]
    assert report["per_class"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(0.6667), "support": 2}
    assert report["macro_f1"] == pytest.approx((0.6667 + 0.8) / 2, abs=1e-3)


def test_extra_rows_join_training_only_and_never_repeat_a_held_out_text(tmp_path: Path) -> None:
    (tmp_path / "main.csv").write_text("text,label\n" + "".join(f"m{i},{'ab'[i % 2]}\n" for i in range(20)))
    (tmp_path / "extra.csv").write_text("text,label\nm0,a\nm1,b\nx1,a\nx2,b\nx2,b\n")
    spec = SPEC.model_copy(update={"dataset": "main.csv", "extra_datasets": ("extra.csv",)})
    sets = training_sets(spec, tmp_path, seed=1, train_examples=None, eval_examples=None, dev_examples=4)
    held_out = {ex.text for ex in sets.dev + sets.validation}
    train = [ex.text for ex in sets.train]
    assert {"x1", "x2"} <= set(train)
    assert len(train) == len(set(train))  # x2 once, and m0/m1 only where they were training rows anyway
    assert not held_out & set(train)
    assert sets.extra["extra.csv"]["rows_read"] == 5
    assert (
        sets.validation
        == training_sets(spec.model_copy(update={"extra_datasets": ()}), tmp_path, 1, None, None, 4).validation
    )


def test_tweets_that_normalise_alike_are_one_example_with_the_majority_label(tmp_path: Path) -> None:
    rows = ["Fire! http://t.co/a,1", "Fire! http://t.co/b,1", "Fire! https://t.co/c,0", "calm day,0"]
    (tmp_path / "t.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
    spec = SPEC.model_copy(update={"text": SPEC.text.model_copy(update={"normalise": "tweet"}), "labels": ("0", "1")})
    examples, read = read_examples(spec, tmp_path / "t.csv")
    assert read == 4
    assert [(ex.text, ex.label) for ex in examples] == [("Fire! http://t.co/a", 1), ("calm day", 0)]
