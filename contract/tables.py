"""Reading tables of texts: CSV (`.csv`, comma or semicolon), TSV (`.tsv`, `.tab`) and JSON Lines (`.jsonl`,
`.ndjson`), row by row, with the line each row starts on.

One reader for every table a person hands the service: the training data of a task they add (`modelops task
add`), and the file of a bulk job (`POST /v1/jobs`). A file that cannot be read as a whole raises `TableError`
naming where, what is wrong and the fix; what is wrong with one row (an empty cell, a text too long) is the
caller's to judge. Standard library only: the gateway reads job files with it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

DELIMITERS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
JSON_LINES = (".jsonl", ".ndjson")
TABLE_SUFFIXES = (*DELIMITERS, *JSON_LINES)
FORMATS_TEXT = "CSV (.csv), TSV (.tsv) or JSON Lines (.jsonl)"
# csv's own default (131,072 characters) would refuse a long review before a length check could name it
csv.field_size_limit(16 * 1024 * 1024)


class TableError(ValueError):
    """The table cannot be read as a whole: where, what is wrong, and how to fix it."""

    def __init__(self, where: str, problem: str, fix: str) -> None:
        super().__init__(f"{where}: {problem}. {fix}")
        self.where, self.problem, self.fix = where, problem, fix


@dataclass(frozen=True)
class Row:
    """One row: the line it starts on, and the wanted columns' cells as text ("" when empty or absent)."""

    line: int
    cells: dict[str, str]

    @property
    def where(self) -> str:
        return f"line {self.line}"


def suffix_of(name: str) -> str:
    return name[name.rfind(".") :].lower() if "." in name else ""


def decode(data: bytes, name: str) -> str:
    """The table's text, as UTF-8 (a leading byte-order mark is dropped); undecodable bytes are named by line
    and offset."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        suffix = suffix_of(name) or ".csv"
        raise TableError(
            f"{name}, line {line}",
            f"byte 0x{data[exc.start]:02x} at offset {exc.start} is not UTF-8",
            f"Save the file as UTF-8 (for example `iconv -f latin1 -t utf-8 {name} > fixed{suffix}`)",
        ) from None


def _cell(value: object) -> str:
    """A cell as text: JSON numbers and booleans as written (`1`, `true`), nothing as ""."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def _missing(name: str, found: list[str], wanted: Mapping[str, str]) -> None:
    """`wanted`: column -> the option that names it (`--text-column`, `input_column`)."""
    absent = [f"{option} {column!r}" for column, option in wanted.items() if column not in found]
    if absent:
        columns = ", ".join(repr(c) for c in found) or "none"
        options = " and ".join(dict.fromkeys(wanted.values()))
        raise TableError(
            name,
            f"no column for {' and '.join(absent)} (the columns are {columns})",
            f"Name the file's columns with {options}",
        )


def _delimiter(name: str, text: str) -> str:
    delimiter = DELIMITERS.get(suffix_of(name))
    if delimiter is None:
        raise TableError(name, f"unknown file type {suffix_of(name) or '(none)'!r}", f"Use {FORMATS_TEXT}")
    header = text.split("\n", 1)[0]
    if delimiter == "," and "," not in header and ";" in header:
        return ";"  # spreadsheets in locales whose decimal mark is a comma save CSV with semicolons
    return delimiter


def columns(data: bytes, name: str) -> list[str]:
    """The columns a table names: its header (CSV, TSV) or its first object's keys (JSON Lines); for choosing
    among them before the whole file is read."""
    if suffix_of(name) in JSON_LINES:
        first = next((line for line in decode(data, name).splitlines() if line.strip()), "")
        try:
            row = json.loads(first) if first else {}
        except json.JSONDecodeError:
            row = {}
        return list(row) if isinstance(row, dict) else []
    text = decode(data, name)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(name, text))
    return [column for column in next(reader, []) if column]


def read_rows(data: bytes, name: str, wanted: Mapping[str, str], optional: tuple[str, ...] = ()) -> Iterator[Row]:
    """The rows of table `name` (its suffix says the format), with the cells of the `wanted` columns (column ->
    the option that names it, for the error when one is missing) and of the `optional` ones. Rows whose cells
    are all empty are skipped."""
    suffix = suffix_of(name)
    if suffix in JSON_LINES:
        yield from _json_lines(data, name, wanted, optional)
        return
    text = decode(data, name)
    delimiter = _delimiter(name, text)
    # strict: a stray quote is an error naming its line, not a field that silently swallows the rows after it
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    columns = [*wanted, *optional]
    start = 1
    try:
        _missing(name, [column for column in reader.fieldnames or [] if column], wanted)
        start = reader.line_num + 1
        for row in reader:
            if any((value or "").strip() for value in row.values() if isinstance(value, str)):
                yield Row(start, {column: _cell(row.get(column)) for column in columns})
            start = reader.line_num + 1
    except csv.Error as exc:
        raise TableError(
            f"{name}, line {start}", f"not valid {suffix[1:].upper()} ({exc})", "Fix or delete the line"
        ) from None


def _json_lines(data: bytes, name: str, wanted: Mapping[str, str], optional: tuple[str, ...]) -> Iterator[Row]:
    columns = [*wanted, *optional]
    example = ", ".join(f'"{column}": ...' for column in wanted)
    for number, line in enumerate(decode(data, name).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TableError(
                f"{name}, line {number}",
                # json's messages end in " at" when they go on to say where ("Unterminated string starting at")
                f"not valid JSON ({exc.msg.removesuffix(' at')} at column {exc.colno})",
                "Fix the line",
            ) from None
        if not isinstance(row, dict):
            raise TableError(f"{name}, line {number}", "not a JSON object", f"Write each row as {{{example}}}")
        if number == 1 or not any(column in row for column in wanted):
            _missing(name, list(row), wanted)
        yield Row(number, {column: _cell(row.get(column)) for column in columns})
