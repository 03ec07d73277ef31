"""The labelled-data files a task can be trained from, read record by record with where each record is.

Tables (read by `contract.tables`): CSV, TSV and JSON Lines, one labelled input per row, its text (or, for an
image task, its image file relative to the table) and its label in two named columns.
Image folders: one sub-folder per label holding that label's images, the common ImageFolder layout.

Every record says where it came from (`line 12`, `cats/001.jpg`), so training, validation and the reports
of both can point a person at the exact row. A file that cannot be read as a whole raises `DataFileError`
with what is wrong and how to fix it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from contract.tables import FORMATS_TEXT, TABLE_SUFFIXES, TableError, read_rows, suffix_of

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
# a data file that cannot be read as a whole (the training side's name for the contract's table error)
DataFileError = TableError


@dataclass(frozen=True)
class Record:
    """One labelled input as the file has it. `text` is the input text, or an image task's image path
    (absolute); `label` the raw label value, "" when the row has none; `where` names the row or file."""

    where: str
    text: str
    label: str


def describe_formats() -> str:
    return f"{FORMATS_TEXT}, or a folder of images with one sub-folder per label"


def read_table(path: Path, text_column: str, label_column: str) -> Iterator[Record]:
    """The records of a CSV, TSV or JSON Lines file (`contract.tables`); `where` is the line a record starts on."""
    if suffix_of(path.name) not in TABLE_SUFFIXES:
        raise TableError(
            path.name, f"unknown file type {suffix_of(path.name) or '(none)'!r}", f"Use {describe_formats()}"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TableError(
            str(path), f"cannot read it ({exc.strerror or exc})", "Check the path and its permissions"
        ) from None
    wanted = {text_column: "--text-column", label_column: "--label-column"}
    for row in read_rows(data, path.name, wanted):
        yield Record(row.where, row.cells[text_column], row.cells[label_column].strip())


def read_image_folder(root: Path) -> Iterator[Record]:
    """One record per image file under each label's sub-folder (searched to any depth), in name order; hidden
    files are skipped, files with other suffixes are yielded with an empty label so validation can name them."""
    if not root.is_dir():
        raise DataFileError(str(root), "not a folder", "Give an image task a folder with one sub-folder per label")
    loose = sorted(p.name for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
    if loose:
        raise DataFileError(
            root.name,
            f"{len(loose)} file(s) directly in the folder ({', '.join(loose[:3])})",
            "Put each image in the sub-folder named after its label",
        )
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for file in sorted(folder.rglob("*")):
            if file.is_file() and not any(part.startswith(".") for part in file.relative_to(root).parts):
                label = folder.name if file.suffix.lower() in IMAGE_SUFFIXES else ""
                yield Record(str(file.relative_to(root)), str(file.resolve()), label)


def read_records(path: Path, text_column: str, label_column: str, images: bool) -> Iterator[Record]:
    """An image folder's or a table's records. A table of an image task names each image in its text column,
    relative to the table's folder (the shared data's `pose/labels.csv`)."""
    if images and path.is_dir():
        yield from read_image_folder(path)
        return
    for record in read_table(path, text_column, label_column):
        if images and record.text.strip():
            yield Record(record.where, str((path.parent / record.text.strip()).resolve()), record.label)
        else:
            yield record
