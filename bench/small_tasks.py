"""Many small classifiers, quickly: what `bench.many_tasks` and the scaling tests register by the dozen.

Each is a task a user could have added with `modelops task add` (the same spec defaults: scaled to zero when
idle), built from a relabelled slice of the shared data: a text task from 160 movie reviews or tweets whose
labels are the data's own, a photo task from 24 photos of two actions. Their recipe is the quickest one, the
n-gram linear model alone for texts (a few seconds each), because what they are for is serving: how much an idle
task costs, how fast a cold one answers.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from contract.catalog import DEFAULT_RECIPE, TaskSpec, parse_task_document, task_document
from modelops.build import build_archive
from modelops.store.s3 import ModelStore
from modelops.tasks.spec import new_task_spec

ROWS = 160
PHOTOS = 12


def _review_slices(data: Path) -> Iterator[list[tuple[str, str]]]:
    """Consecutive balanced slices of the IMDb reviews, `ROWS` each (short ones: quick to train and to send)."""
    with (data / "imdb" / "reviews.csv").open(encoding="utf-8", newline="") as fh:
        rows = [(r["text"], r["label"]) for r in csv.DictReader(fh) if len(r["text"]) < 1200]
    by_label = {label: [r for r in rows if r[1] == label] for label in ("negative", "positive")}
    half = ROWS // 2
    for start in range(0, min(map(len, by_label.values())) - half, half):
        yield [row for label in by_label for row in by_label[label][start : start + half]]


def text_data(data: Path, folder: Path, count: int) -> list[Path]:
    """`count` CSV files of labelled reviews (the slices repeat past the data's end)."""
    folder.mkdir(parents=True, exist_ok=True)
    slices = list(_review_slices(data))
    paths = []
    for index in range(count):
        path = folder / f"reviews-{index}.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows([("text", "label"), *slices[index % len(slices)]])
        paths.append(path)
    return paths


def linear_text_spec(name: str, csv_path: Path, idle: bool = True) -> TaskSpec:
    """A `task add` text task's spec with the linear-only recipe (3 folds); `idle=False` keeps it warm."""
    spec = new_task_spec(name, "text", ["negative", "positive"], csv_path, folds=3)
    document = task_document(spec)
    document["recipes"] = {DEFAULT_RECIPE: {**document["recipes"][DEFAULT_RECIPE], "encoder": False}}
    document["runtime"] = "torch"
    if not idle:
        document["min_workers"] = document["workers"]
    return parse_task_document(document)


def photo_spec(name: str, folder: Path) -> TaskSpec:
    """A `task add` photo task (frozen backbone, heads chosen by cross-validation) on two actions."""
    return new_task_spec(name, "image", sorted(p.name for p in folder.iterdir()), folder, folds=3)


def photo_data(data: Path, folder: Path) -> Path:
    """An ImageFolder of `PHOTOS` photos each of two actions from the shared data."""
    for source in ("running", "sleeping"):
        (folder / source).mkdir(parents=True, exist_ok=True)
        for photo in sorted((data / "pose" / source).glob("*.jpg"))[:PHOTOS]:
            (folder / source / photo.name).write_bytes(photo.read_bytes())
    return folder


def publish(specs: list[TaskSpec], store: ModelStore, work: Path) -> dict[str, str]:
    """Train, package and publish each task; returns each model's published version."""
    return {
        spec.model_name: str(store.publish(build_archive(spec, DEFAULT_RECIPE, Path("/"), work / spec.task))["version"])
        for spec in specs
    }
