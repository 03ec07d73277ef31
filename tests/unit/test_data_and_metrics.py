from __future__ import annotations

from pathlib import Path

import pytest

from modelops.catalog import load_catalog
from modelops.data import Example, read_examples, stratified_sample, stratified_split
from modelops.metrics import classification_report


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
