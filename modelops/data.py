"""Read a task's labelled data from the shared data folder, deduplicate it and split it reproducibly.

The data is never copied into the project: the build is handed a folder (default `../shared/data`).
"""

from __future__ import annotations

import csv
import hashlib
import os
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from modelops.catalog import REPO_ROOT, TaskSpec
from modelops.tools import file_sha256

DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The data folder: the argument, else `$DATA_DIR`, else `../shared/data` beside the repo."""
    return Path(explicit or os.environ.get("DATA_DIR") or DEFAULT_DATA_DIR)


@dataclass(frozen=True)
class Example:
    """One labelled input: the text itself, or for image tasks the image file's path."""

    text: str
    label: int


@dataclass(frozen=True)
class Split:
    train: list[Example]
    validation: list[Example]
    data_sha256: str
    rows_read: int
    duplicates_dropped: int
    seed: int
    validation_fraction: float

    def describe(self) -> dict[str, object]:
        """What the model card records about the data."""
        return {
            "data_sha256": self.data_sha256,
            "rows_read": self.rows_read,
            "duplicates_dropped": self.duplicates_dropped,
            "train_examples": len(self.train),
            "validation_examples": len(self.validation),
            "seed": self.seed,
            "validation_fraction": self.validation_fraction,
        }


def read_rows(spec: TaskSpec, path: Path) -> list[Example]:
    """Every labelled row of a file in the shared data's format, in file order (image paths made absolute)."""
    examples = []
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            text = (row.get(spec.input_column) or "").strip()
            if not text:
                continue
            if spec.kind == "image":
                text = str(path.parent / text)
            examples.append(Example(text, spec.labels.index(spec.label_for_value(row[spec.label_column].strip()))))
    return examples


def read_examples(spec: TaskSpec, path: Path) -> tuple[list[Example], int]:
    """Deduplicated (text, label index) pairs for training, and the raw row count.

    Repeated texts keep their majority label; texts whose copies disagree evenly are dropped, since either
    label would teach the model noise.
    """
    rows = read_rows(spec, path)
    votes: dict[str, Counter[int]] = defaultdict(Counter)
    for example in rows:
        votes[example.text][example.label] += 1  # dicts keep first-seen order
    examples = []
    for text, counts in votes.items():
        (top, top_n), *rest = counts.most_common()
        if rest and rest[0][1] == top_n:
            continue
        examples.append(Example(text, top))
    return examples, len(rows)


def stratified_split(
    examples: list[Example], validation_fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """Seeded split that keeps each label's share equal in train and validation."""
    rng = random.Random(seed)
    by_label: dict[int, list[Example]] = defaultdict(list)
    for ex in examples:
        by_label[ex.label].append(ex)
    train: list[Example] = []
    validation: list[Example] = []
    for label in sorted(by_label):
        group = by_label[label][:]
        rng.shuffle(group)
        cut = round(len(group) * validation_fraction)
        validation.extend(group[:cut])
        train.extend(group[cut:])
    rng.shuffle(train)
    rng.shuffle(validation)
    return train, validation


def stratified_sample(examples: list[Example], n: int, seed: int) -> list[Example]:
    """At most `n` examples with label shares kept, for quick recipes and CI-sized runs."""
    if n >= len(examples):
        return examples
    sample, _ = stratified_split(examples, 1 - n / len(examples), seed)
    return sample


def data_sha256(spec: TaskSpec, path: Path, examples: list[Example]) -> str:
    """Hash of what training reads: the CSV, and for image tasks every image's bytes in order too."""
    if spec.kind != "image":
        return file_sha256(path)
    digest = hashlib.sha256(file_sha256(path).encode())
    for example in examples:
        digest.update(file_sha256(Path(example.text)).encode())
    return digest.hexdigest()


def load_split(spec: TaskSpec, root: Path, seed: int = 13, validation_fraction: float = 0.1) -> Split:
    path = root / spec.dataset
    if not path.is_file():
        raise FileNotFoundError(f"dataset for task {spec.task!r} not found at {path} (set DATA_DIR or --data)")
    examples, rows = read_examples(spec, path)
    train, validation = stratified_split(examples, validation_fraction, seed)
    return Split(
        train=train,
        validation=validation,
        data_sha256=data_sha256(spec, path, examples),
        rows_read=rows,
        duplicates_dropped=rows - len(examples),
        seed=seed,
        validation_fraction=validation_fraction,
    )


@dataclass(frozen=True)
class TrainingSets:
    """What one training run reads: `train` to fit, `dev` (held out of train) to pick the best evaluation
    and hyper-parameters, `validation` only to report the final scores."""

    split: Split
    train: list[Example]
    dev: list[Example]
    validation: list[Example]


def training_sets(
    spec: TaskSpec,
    root: Path,
    seed: int,
    train_examples: int | None,
    eval_examples: int | None,
    dev_examples: int = 0,
) -> TrainingSets:
    """The split, with `dev_examples` carved out of its train part, then (optionally) sub-sampled, label
    shares kept throughout."""
    split = load_split(spec, root, seed=seed)
    train, dev = split.train, []
    if dev_examples:
        train, dev = stratified_split(train, min(dev_examples, len(train) // 2) / len(train), seed)
    if train_examples:
        train = stratified_sample(train, train_examples, seed)
    return TrainingSets(split, train, dev, validation_sample(split, eval_examples, seed))


def validation_sample(split: Split, eval_examples: int | None, seed: int) -> list[Example]:
    """The validation examples a model is scored on: all, or a stratified sample of `eval_examples`."""
    return stratified_sample(split.validation, eval_examples, seed) if eval_examples else split.validation
