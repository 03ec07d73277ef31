"""The labelled-data files a task can be trained from, read record by record with where each record is.

Tables: CSV (`.csv`), TSV (`.tsv`, `.tab`) and JSON Lines (`.jsonl`, `.ndjson`), one labelled input per row,
its text (or, for an image task, its image file relative to the table) and its label in two named columns.
Image folders: one sub-folder per label holding that label's images, the common ImageFolder layout.

Every record says where it came from (`line 12`, `cats/001.jpg`), so training, validation and the reports
of both can point a person at the exact row. A file that cannot be read as a whole raises `DataFileError`
with what is wrong and how to fix it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

TABLE_DELIMITERS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
JSON_LINES = (".jsonl", ".ndjson")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
# csv's own default (131,072 characters) would refuse a long review before the length check could name it
csv.field_size_limit(16 * 1024 * 1024)


class DataFileError(ValueError):
    """The data file (or folder) cannot be read as a whole: where, what is wrong, and how to fix it."""

    def __init__(self, where: str, problem: str, fix: str) -> None:
        super().__init__(f"{where}: {problem}. {fix}")
        self.where, self.problem, self.fix = where, problem, fix


@dataclass(frozen=True)
class Record:
    """One labelled input as the file has it. `text` is the input text, or an image task's image path
    (absolute); `label` the raw label value, "" when the row has none; `where` names the row or file."""

    where: str
    text: str
    label: str


def describe_formats() -> str:
    return "CSV (.csv), TSV (.tsv) or JSON Lines (.jsonl), or a folder of images with one sub-folder per label"


def read_text(path: Path) -> str:
    """A table's text, decoded as UTF-8 (a leading byte-order mark is dropped); undecodable bytes are named by
    line and offset."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataFileError(
            str(path), f"cannot read it ({exc.strerror or exc})", "Check the path and its permissions"
        ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataFileError(
            f"{path.name}, line {line}",
            f"byte 0x{data[exc.start]:02x} at offset {exc.start} is not UTF-8",
            f"Save the file as UTF-8 (for example `iconv -f latin1 -t utf-8 {path.name} > fixed{path.suffix}`)",
        ) from None


def _missing(path: Path, found: list[str], wanted: dict[str, str]) -> None:
    absent = [f"--{option} {column!r}" for option, column in wanted.items() if column not in found]
    if absent:
        columns = ", ".join(repr(c) for c in found) or "none"
        raise DataFileError(
            path.name,
            f"no column for {' and '.join(absent)} (the columns are {columns})",
            "Name the file's columns with --text-column and --label-column",
        )


def _cell(value: object) -> str:
    """A table cell as text: JSON numbers and booleans as written (`1`, `true`), nothing as ""."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def read_table(path: Path, text_column: str, label_column: str) -> Iterator[Record]:
    """The records of a CSV, TSV or JSON Lines file; `where` is the line its record starts on."""
    suffix = path.suffix.lower()
    wanted = {"text-column": text_column, "label-column": label_column}
    if suffix in JSON_LINES:
        yield from _read_json_lines(path, wanted)
        return
    delimiter = TABLE_DELIMITERS.get(suffix)
    if delimiter is None:
        raise DataFileError(path.name, f"unknown file type {suffix or '(none)'!r}", f"Use {describe_formats()}")
    text = read_text(path)
    header = text.split("\n", 1)[0]
    if delimiter == "," and "," not in header and ";" in header:
        delimiter = ";"  # spreadsheets in locales whose decimal mark is a comma save CSV with semicolons
    # strict: a stray quote is an error naming its line, not a field that silently swallows the rows after it
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    start = 1
    try:
        _missing(path, [name for name in reader.fieldnames or [] if name], wanted)
        start = reader.line_num + 1
        for row in reader:
            if any((value or "").strip() for value in row.values() if isinstance(value, str)):
                yield Record(f"line {start}", _cell(row.get(text_column)), _cell(row.get(label_column)).strip())
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataFileError(
            f"{path.name}, line {start}", f"not valid {suffix[1:].upper()} ({exc})", "Fix or delete the line"
        ) from None


def _read_json_lines(path: Path, wanted: dict[str, str]) -> Iterator[Record]:
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFileError(
                f"{path.name}, line {number}", f"not valid JSON ({exc.msg} at column {exc.colno})", "Fix the line"
            ) from None
        if not isinstance(row, dict):
            raise DataFileError(
                f"{path.name}, line {number}", "not a JSON object", 'Write each row as {"text": ..., "label": ...}'
            )
        if number == 1 or not any(column in row for column in wanted.values()):
            _missing(path, list(row), wanted)
        yield Record(f"line {number}", _cell(row.get(wanted["text-column"])), _cell(row.get(wanted["label-column"])))


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
