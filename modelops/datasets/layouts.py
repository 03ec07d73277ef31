"""Turn each public original into the files the catalog's `dataset` paths name, in the shape the shared data
folder has (docs/models.md#training-data): a CSV of `text,label` for reviews, the tweets' own CSV, one folder of
photos per action with a `labels.csv`.

Each layout reads one downloaded file and writes under a staging folder; `modelops.datasets.fetch` moves the
result into the data folder. A file that is not in the original's format stops with what was expected.
"""

from __future__ import annotations

import csv
import io
import random
import re
import shutil
import tarfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import pyarrow.parquet as pq
from PIL import Image


class LayoutError(ValueError):
    """The downloaded file is not in its original's format."""


# --- IMDb: aclImdb_v1.tar.gz ------------------------------------------------------------------------------------

_IMDB_TRAIN = re.compile(r"aclImdb/train/(pos|neg)/\d+_(\d+)\.txt")
# the main file's reviews per label, as in the shared folder; the rest of the split goes to the extra file
IMDB_MAIN_PER_LABEL = 4000
IMDB_SEED = 13


@dataclass(frozen=True)
class _Review:
    path: str
    rating: int
    label: str
    text: str


def imdb_tarball(archive: Path, out: Path) -> None:
    """The training split's labelled reviews: texts that occur more than once dropped (their copies are not
    independent), a seeded balanced sample for `imdb/reviews.csv` (at most a third of each label, so the extra
    file is never empty), the rest in `imdb/reviews_extra.csv`; each with a `*_source.csv` naming the original
    file and star rating of every row."""
    reviews = []
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            found = _IMDB_TRAIN.fullmatch(member.name)
            stream = tar.extractfile(member) if found and member.isfile() else None
            if found and stream is not None:
                label = "positive" if found.group(1) == "pos" else "negative"
                reviews.append(_Review(member.name, int(found.group(2)), label, stream.read().decode("utf-8")))
    if not reviews:
        raise LayoutError(f"{archive.name}: no aclImdb/train/pos or aclImdb/train/neg reviews in the archive")
    copies = Counter(r.text for r in reviews)
    unique = sorted((r for r in reviews if copies[r.text] == 1), key=lambda r: r.path)
    rng = random.Random(IMDB_SEED)
    main: list[_Review] = []
    extra: list[_Review] = []
    for label in ("negative", "positive"):
        group = [r for r in unique if r.label == label]
        rng.shuffle(group)
        cut = min(IMDB_MAIN_PER_LABEL, len(group) // 3)
        main.extend(group[:cut])
        extra.extend(group[cut:])
    rng.shuffle(main)
    rng.shuffle(extra)
    folder = out / "imdb"
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("reviews", main), ("reviews_extra", extra)):
        _write_csv(folder / f"{name}.csv", ["text", "label"], [[r.text, r.label] for r in rows])
        _write_csv(
            folder / f"{name}_source.csv",
            ["row", "source_path", "rating", "label"],
            [[i, r.path, r.rating, r.label] for i, r in enumerate(rows)],
        )


# --- disaster tweets: Kaggle's train.csv --------------------------------------------------------------------------

TWEETS_HEADER = ["id", "keyword", "location", "text", "target"]


def tweets_csv(original: Path, out: Path) -> None:
    """Kaggle's file as it is (the build deduplicates and splits): only its header is checked."""
    with original.open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle), [])
    if header != TWEETS_HEADER:
        raise LayoutError(f"{original.name}: header {','.join(header)!r}, expected {','.join(TWEETS_HEADER)!r}")
    folder = out / "disaster"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(original, folder / "tweets.csv")


# --- human actions: the Hugging Face copy's parquet ------------------------------------------------------------------


def har_parquet(original: Path, out: Path) -> None:
    """Each photo's bytes into `pose/<action>/<file>` and `pose/labels.csv` (`file,label`). The action names
    are the file's own (its Hugging Face `ClassLabel` names, in label-index order), never assumed."""
    table = pq.ParquetFile(original)
    names = _class_names(table, original.name)
    folder = out / "pose"
    rows: list[list[object]] = []
    for batch in table.iter_batches(batch_size=256, columns=["image", "labels"]):
        for image, index in zip(batch.column("image").to_pylist(), batch.column("labels").to_pylist(), strict=True):
            if not image or not image.get("bytes") or index is None or not 0 <= index < len(names):
                raise LayoutError(
                    f"{original.name}: row {len(rows)} has no image bytes or a label outside 0-{len(names) - 1}"
                )
            name = Path(image.get("path") or f"Image_{len(rows)}.{_image_format(image['bytes'])}").name
            label = names[index]
            (folder / label).mkdir(parents=True, exist_ok=True)
            if (folder / label / name).exists():  # two photos of one name: both kept
                name = f"{Path(name).stem}_{len(rows)}{Path(name).suffix}"
            (folder / label / name).write_bytes(image["bytes"])
            rows.append([f"{label}/{name}", label])
    _write_csv(folder / "labels.csv", ["file", "label"], rows)


def _class_names(table: pq.ParquetFile, file_name: str) -> list[str]:
    metadata = table.schema_arrow.metadata or {}
    try:
        features = orjson.loads(metadata[b"huggingface"])["info"]["features"]
        return [str(n) for n in features["labels"]["names"]]
    except (KeyError, TypeError, orjson.JSONDecodeError):
        raise LayoutError(f"{file_name}: no Hugging Face ClassLabel names for the 'labels' column") from None


def _image_format(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as image:
        return (image.format or "jpeg").lower().replace("jpeg", "jpg")


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


LAYOUTS: dict[str, Callable[[Path, Path], None]] = {
    "imdb_tarball": imdb_tarball,
    "tweets_csv": tweets_csv,
    "har_parquet": har_parquet,
}
