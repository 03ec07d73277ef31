"""Read a task's labelled data from the shared data folder, deduplicate it and split it reproducibly.

The data is never copied into the project: the build is handed a folder (default `../shared/data`).
"""

from __future__ import annotations

import hashlib
import os
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from contract.catalog import CONTROL_CHARACTER, REPO_ROOT, TaskSpec, TextTask
from handlers.text_normalise import NORMALISERS
from modelops.kinds import KINDS
from modelops.tools import file_sha256
from modelops.train.formats import read_records

DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
# where `modelops data fetch` lays out the public originals when no data folder was given or found
FETCHED_DATA_DIR = REPO_ROOT / "var" / "data"


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The data folder: the argument, else `$DATA_DIR`, else `../shared/data` beside the repo when it exists,
    else `var/data` (the fetched originals)."""
    chosen = explicit or os.environ.get("DATA_DIR")
    if chosen:
        return Path(chosen)
    return DEFAULT_DATA_DIR if DEFAULT_DATA_DIR.exists() else FETCHED_DATA_DIR


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
    """Every labelled row of a task's data file or image folder, in file order (image paths absolute); rows
    without an input are skipped (`modelops.tasks.checks` names them before a user's task is trained). Control
    characters are dropped from texts: the API refuses them, so a model never sees them served."""
    images = KINDS[spec.kind].reads_images
    return [
        Example(
            record.text if images else CONTROL_CHARACTER.sub("", record.text),
            spec.labels.index(spec.label_for_value(record.label)),
        )
        for record in read_records(path, spec.input_column, spec.label_column, images)
        if record.text.strip() and not (images and not record.label)
    ]


def dedup_key(spec: TaskSpec) -> Callable[[str], str]:
    """What makes two inputs the same: the text after the task's normalisation (tweets that differ only in
    their t.co link are one tweet), the path for images."""
    return NORMALISERS[spec.text.normalise] if isinstance(spec, TextTask) else str


def read_examples(spec: TaskSpec, path: Path) -> tuple[list[Example], int]:
    """Deduplicated (text, label index) pairs for training, and the raw row count.

    Repeated inputs (by `dedup_key`) keep their majority label and their first text; inputs whose copies
    disagree evenly are dropped, since either label would teach the model noise.
    """
    rows = read_rows(spec, path)
    key = dedup_key(spec)
    votes: dict[str, Counter[int]] = defaultdict(Counter)
    first: dict[str, str] = {}
    for example in rows:
        k = key(example.text)
        votes[k][example.label] += 1  # dicts keep first-seen order
        first.setdefault(k, example.text)
    examples = []
    for k, counts in votes.items():
        (top, top_n), *rest = counts.most_common()
        if rest and rest[0][1] == top_n:
            continue
        examples.append(Example(first[k], top))
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
    """Hash of what training reads: the table, and for image tasks every image's bytes in order too (an image
    folder: the images alone)."""
    if not KINDS[spec.kind].reads_images:
        return file_sha256(path)
    digest = hashlib.sha256(b"" if path.is_dir() else file_sha256(path).encode())
    for example in examples:
        digest.update(file_sha256(Path(example.text)).encode())
    return digest.hexdigest()


def load_split(spec: TaskSpec, root: Path, seed: int = 13, validation_fraction: float = 0.1) -> Split:
    path = root / spec.dataset
    if not path.exists():
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
    and hyper-parameters, `validation` only to report the final scores. `extra` describes the rows of the
    task's `extra_datasets` that joined `train`."""

    split: Split
    train: list[Example]
    dev: list[Example]
    validation: list[Example]
    extra: dict[str, object]


def extra_examples(spec: TaskSpec, root: Path, known: list[Example]) -> tuple[list[Example], dict[str, object]]:
    """Rows of the task's `extra_datasets` for training only: deduplicated, minus anything that equals an input
    of the main file (above all its dev and validation rows: the validation split stays the main file's, so
    figures compare across models)."""
    key = dedup_key(spec)
    seen = {key(ex.text) for ex in known}
    examples: list[Example] = []
    described: dict[str, object] = {}
    for name in spec.extra_datasets:
        path = root / name
        if not path.exists():
            raise FileNotFoundError(
                f"extra dataset for task {spec.task!r} not found at {path} (set DATA_DIR or --data)"
            )
        rows, read = read_examples(spec, path)
        kept = [ex for ex in rows if key(ex.text) not in seen]
        seen.update(key(ex.text) for ex in kept)
        examples.extend(kept)
        described[name] = {"sha256": file_sha256(path), "rows_read": read, "train_examples": len(kept)}
    return examples, described


def training_sets(
    spec: TaskSpec,
    root: Path,
    seed: int,
    train_examples: int | None,
    eval_examples: int | None,
    dev_examples: int = 0,
    validation_fraction: float = 0.1,
) -> TrainingSets:
    """The split, with `dev_examples` carved out of its train part and the extra datasets' rows added to
    train, then (optionally) sub-sampled, label shares kept throughout."""
    split = load_split(spec, root, seed=seed, validation_fraction=validation_fraction)
    train, dev = carve_dev(split, dev_examples, seed)
    extra, described = extra_examples(spec, root, [*train, *dev, *split.validation])
    if extra:
        train = train + extra
        random.Random(seed).shuffle(train)
    if train_examples:
        train = stratified_sample(train, train_examples, seed)
    return TrainingSets(split, train, dev, validation_sample(split, eval_examples, seed), described)


def carve_dev(split: Split, dev_examples: int, seed: int) -> tuple[list[Example], list[Example]]:
    """(train, dev): `dev_examples` of the split's train part held out, label shares kept; the same seed and
    size give the same dev slice again (packaging judges the serving variant on it)."""
    if not dev_examples:
        return split.train, []
    return stratified_split(split.train, min(dev_examples, len(split.train) // 2) / len(split.train), seed)


def validation_sample(split: Split, eval_examples: int | None, seed: int) -> list[Example]:
    """The validation examples a model is scored on: all, or a stratified sample of `eval_examples`."""
    return stratified_sample(split.validation, eval_examples, seed) if eval_examples else split.validation
