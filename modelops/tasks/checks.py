"""Check a user's labelled data before anything is trained, and say exactly what to change.

Every problem names the file and the row (its line) or the image's path, what is wrong and the fix. Errors
stop `modelops task add` before training, so nothing is published from data that would train a broken or
unmeasurable model; warnings are printed and training goes on. Each check reads the file the way training
reads it (`modelops.train.formats`), so what passes here trains.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from contract.catalog import CONTROL_CHARACTER
from handlers.image_decode import decode
from modelops.train.formats import DataFileError, Record, read_image_folder, read_table

# Rows of one kind of problem listed one by one; the rest are counted.
LISTED = 5
# A label this many times as frequent as the rarest one is heavy imbalance (a warning).
IMBALANCE_RATIO = 10


def min_examples_per_label(folds: int) -> int:
    """Each label needs two examples in every fold held out, so cross-validation can measure it."""
    return 2 * folds


@dataclass(frozen=True)
class Problem:
    severity: Literal["error", "warning"]
    where: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.where}: {self.problem}. {self.fix}"


@dataclass
class DataReport:
    """What the data holds (the usable records, per label) and every problem found."""

    source: Path
    unit: str = "rows"
    records: list[Record] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def labels(self) -> Counter[str]:
        return Counter(record.label for record in self.records)

    def error(self, where: str, problem: str, fix: str) -> None:
        self.problems.append(Problem("error", where, problem, fix))

    def warn(self, where: str, problem: str, fix: str) -> None:
        self.problems.append(Problem("warning", where, problem, fix))

    def each(self, rows: list[str], problem: str, fix: str, severity: Literal["error", "warning"] = "error") -> None:
        """One problem per row for the first LISTED rows, then one line counting the rest."""
        for where in rows[:LISTED]:
            self.problems.append(Problem(severity, f"{self.source.name}, {where}", problem, fix))
        if len(rows) > LISTED:
            more = f"{len(rows) - LISTED} more rows ({rows[LISTED]} to {rows[-1]})"
            self.problems.append(Problem(severity, f"{self.source.name}, {more}", problem, fix))


def _thousands(n: int) -> str:
    return f"{n:,}"


def check_table(path: Path, text_column: str, label_column: str, max_chars: int, folds: int) -> DataReport:
    """A text task's CSV, TSV or JSON Lines file: readable, its columns present, every row with a text within
    `max_chars` and a label, no text labelled two ways, enough examples of each label for `folds`-fold
    cross-validation."""
    report = DataReport(path)
    try:
        records = list(read_table(path, text_column, label_column))
    except DataFileError as exc:
        report.error(exc.where, exc.problem, exc.fix)
        return report
    empty_text = [r.where for r in records if not r.text.strip()]
    report.each(empty_text, f"the {text_column!r} cell is empty", "Fill it in or delete the row")
    empty_label = [r.where for r in records if r.text.strip() and not r.label]
    report.each(empty_label, f"the {label_column!r} cell is empty", "Give the row its label or delete the row")
    too_long = [r for r in records if len(r.text) > max_chars]
    for record in too_long[:LISTED]:
        report.error(
            f"{path.name}, {record.where}",
            f"the text has {_thousands(len(record.text))} characters; the limit is {_thousands(max_chars)}",
            "Shorten it, or raise the limit with --max-chars",
        )
    if len(too_long) > LISTED:
        report.error(
            f"{path.name}, {len(too_long) - LISTED} more rows",
            f"texts over {_thousands(max_chars)} characters",
            "Shorten them, or raise the limit with --max-chars",
        )
    controlled = [r.where for r in records if CONTROL_CHARACTER.search(r.text)]
    report.each(
        controlled,
        "the text holds a control character (U+0000-U+001F but tab and line breaks, or U+007F), which the API "
        "refuses in requests; it is trained on without it",
        "Nothing to do; callers must leave such characters out of their texts",
        severity="warning",
    )
    usable = [r for r in records if r.text.strip() and r.label and len(r.text) <= max_chars]
    report.records = _without_conflicts(report, usable)
    _check_labels(report, folds)
    return report


def _without_conflicts(report: DataReport, records: list[Record]) -> list[Record]:
    """The records with each repeated text kept once; a text given two labels is an error naming its rows."""
    by_text: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_text[record.text.strip()].append(record)
    conflicts = [copies for copies in by_text.values() if len({r.label for r in copies}) > 1]
    for copies in conflicts[:LISTED]:
        rows = ", ".join(f"{r.where} ({r.label!r})" for r in copies[:4])
        report.error(
            f"{report.source.name}, {copies[0].where}",
            f"the same text has different labels: {rows}",
            "Keep one label for it (edit or delete the other rows)",
        )
    if len(conflicts) > LISTED:
        report.error(
            f"{report.source.name}, {len(conflicts) - LISTED} more texts",
            "the same text has different labels",
            "Keep one label for each text",
        )
    repeated = sum(len(copies) - 1 for copies in by_text.values() if len(copies) > 1 and copies not in conflicts)
    if repeated:
        report.warn(
            report.source.name,
            f"{repeated} rows repeat an earlier row's text and label; each text is trained on once",
            "Nothing to do, unless the repeats were meant to be different texts",
        )
    return [copies[0] for copies in by_text.values() if len({r.label for r in copies}) == 1]


def _check_labels(report: DataReport, folds: int) -> None:
    counts = report.labels
    name = report.source.name
    if not report.records and not report.errors:
        report.error(name, f"no labelled {report.unit}", "Add labelled examples")
        return
    if len(counts) < 2:
        only = f"only one label ({next(iter(counts))!r})" if counts else "no label"
        count = len(report.records)
        unit = report.unit.removesuffix("s") if count == 1 else report.unit
        report.error(name, f"{only} in {count} {unit}", "A classifier needs examples of two labels or more")
        return
    least = min_examples_per_label(folds)
    for label, count in sorted(counts.items()):
        if count < least:
            report.error(
                name,
                f"label {label!r} has {count} example{'s' * (count != 1)}; each label needs at least {least} to "
                f"train and measure it with {folds}-fold cross-validation",
                f"Add examples of {label!r}, or merge it into another label",
            )
    (common, most), (rare, fewest) = counts.most_common()[0], counts.most_common()[-1]
    if fewest >= least and most >= IMBALANCE_RATIO * fewest:
        report.warn(
            name,
            f"heavy imbalance: {most} examples of {common!r} against {fewest} of {rare!r}",
            "The card reports each label's precision and recall; more examples of the rare labels would help",
        )


def check_image_folder(root: Path, max_pixels: int, folds: int) -> DataReport:
    """An image task's folder: one sub-folder per label, every image decodable within `max_pixels`, enough
    images of each label for `folds`-fold cross-validation."""
    report = DataReport(root, unit="images")
    try:
        records = list(read_image_folder(root))
    except DataFileError as exc:
        report.error(exc.where, exc.problem, exc.fix)
        return report
    ignored = [r.where for r in records if not r.label]
    if ignored:
        listed = ", ".join(ignored[:LISTED]) + (f" and {len(ignored) - LISTED} more" if len(ignored) > LISTED else "")
        report.warn(
            root.name,
            f"{len(ignored)} file(s) without an image suffix are ignored: {listed}",
            "Rename them if they are images (.jpg, .jpeg, .png, .webp, .bmp, .gif)",
        )
    report.records = [r for r in records if r.label and _decodes(report, r, max_pixels)]
    _check_labels(report, folds)
    return report


def _decodes(report: DataReport, record: Record, max_pixels: int) -> bool:
    where = f"{report.source.name}/{record.where}"
    try:
        decode(Path(record.text).read_bytes(), max_pixels)
    except ValueError as exc:
        if "pixels" in str(exc):
            report.error(where, f"the image has {exc}", "Scale it down, or delete it")
            return False
        raise
    except Exception as exc:  # Pillow raises many types for data it cannot decode
        report.error(
            where,
            f"does not decode as an image ({type(exc).__name__}: {exc})",
            "Re-save it as JPEG or PNG, or delete it",
        )
        return False
    return True


def check_name(name: str, taken: Iterable[str], reserved: Iterable[str], pattern: str) -> list[Problem]:
    """A new task's name: a valid route and model name, not reserved by the API or UI, not an existing task's."""
    import re

    if not re.fullmatch(pattern, name):
        return [
            Problem(
                "error",
                f"task name {name!r}",
                "a task name is 1 to 40 lower-case letters, digits and underscores, starting with a letter",
                "Choose another name, e.g. support_tickets",
            )
        ]
    if name in set(reserved):
        return [
            Problem("error", f"task name {name!r}", "the name is taken by the API or the UI", "Choose another name")
        ]
    if name in set(taken):
        return [
            Problem(
                "error",
                f"task name {name!r}",
                "a task of this name exists",
                f"Choose another name, or retrain it with `modelops task add {name} --replace ...`",
            )
        ]
    return []
