"""Every check `modelops task add` runs on a user's data before training, each with a bad file written in the
user-facing formats and the exact message a person reads (file, row or path, problem, fix)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from contract.catalog import RESERVED_TASK_NAMES, TASK_NAME_PATTERN
from contract.wire import MAX_PIXELS
from modelops.tasks.checks import check_image_folder, check_name, check_table
from tests import imagegen

GOOD = [(f"a good text number {i}", "good") for i in range(12)] + [(f"a bad text number {i}", "bad") for i in range(12)]


def table(path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("text", "label")) -> Path:
    delimiter = "\t" if path.suffix == ".tsv" else ","
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, delimiter=delimiter).writerows([header, *rows])
    return path


def problems(path: Path, max_chars: int = 100, **columns: str) -> list[str]:
    report = check_table(path, columns.get("text", "text"), columns.get("label", "label"), max_chars, folds=5)
    return [str(problem) for problem in report.problems]


def test_good_files_in_every_format_pass_with_their_labels(tmp_path: Path) -> None:
    jsonl = tmp_path / "ok.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t, "label": label}) + "\n" for t, label in GOOD), encoding="utf-8")
    for path in (table(tmp_path / "ok.csv", GOOD), table(tmp_path / "ok.tsv", GOOD), jsonl):
        report = check_table(path, "text", "label", 100, folds=5)
        assert report.problems == [], path
        assert dict(report.labels) == {"good": 12, "bad": 12}


def test_a_csv_saved_with_semicolons_reads_the_same(tmp_path: Path) -> None:
    path = tmp_path / "semicolons.csv"
    path.write_text(
        "text;label\n" + "".join(f'"{t}; with a semicolon";{label}\n' for t, label in GOOD), encoding="utf-8"
    )
    report = check_table(path, "text", "label", 100, folds=5)
    assert report.problems == []
    assert report.records[0].text == "a good text number 0; with a semicolon"


def test_a_multi_line_quoted_text_is_one_row_and_rows_are_named_by_their_first_line(tmp_path: Path) -> None:
    path = table(tmp_path / "t.csv", [("line one\nline two", "good"), *GOOD, ("", "bad")])
    assert problems(path) == ["error: t.csv, line 28: the 'text' cell is empty. Fill it in or delete the row"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "latin.csv",
            b"text,label\n" + "caf\xe9 au lait,good\n".encode("latin-1"),
            "error: latin.csv, line 2: byte 0xe9 at offset 14 is not UTF-8. Save the file as UTF-8 (for example "
            "`iconv -f latin1 -t utf-8 latin.csv > fixed.csv`)",
        ),
        (
            "rows.jsonl",
            b'{"text": "fine", "label": "good"}\n{"text": "broken", label: "bad"}\n',
            "error: rows.jsonl, line 2: not valid JSON (Expecting property name enclosed in double quotes at column "
            "20). Fix the line",
        ),
        (
            "rows.jsonl",
            b'{"text": "fine", "label": "good"}\n{"text": "broken, "label": "bad"}\n',
            "error: rows.jsonl, line 2: not valid JSON (Expecting ',' delimiter at column 20). Fix the line",
        ),
        (
            "cut.jsonl",
            b'{"text": "fine", "label": "good"}\n{"text": "cut short\n',
            "error: cut.jsonl, line 2: not valid JSON (Unterminated string starting at column 10). Fix the line",
        ),
        (
            "rows.jsonl",
            b'{"text": "fine", "label": "good"}\n["not", "an object"]\n',
            'error: rows.jsonl, line 2: not a JSON object. Write each row as {"text": ..., "label": ...}',
        ),
        (
            "sheet.xlsx",
            b"PK",
            "error: sheet.xlsx: unknown file type '.xlsx'. Use CSV (.csv), TSV (.tsv) or JSON Lines (.jsonl), or a "
            "folder of images with one sub-folder per label",
        ),
        (
            "quote.csv",
            b'text,label\nfine,good\n"an unclosed quote,bad\nthe next row,good\n',
            "error: quote.csv, line 3: not valid CSV (unexpected end of data). Fix or delete the line",
        ),
    ],
)
def test_unreadable_files_are_refused_whole_with_the_line(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert problems(path) == [message]


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.csv"
    assert problems(missing) == [
        f"error: {missing}: cannot read it (No such file or directory). Check the path and its permissions"
    ]


def test_missing_columns_are_named_with_the_columns_the_file_has(tmp_path: Path) -> None:
    path = table(tmp_path / "reviews.csv", GOOD, header=("review", "stars"))
    assert problems(path) == [
        "error: reviews.csv: no column for --text-column 'text' and --label-column 'label' (the columns are "
        "'review', 'stars'). Name the file's columns with --text-column and --label-column"
    ]
    assert problems(path, text="review", label="stars") == []


def test_empty_texts_and_labels_are_named_by_row(tmp_path: Path) -> None:
    path = table(tmp_path / "t.csv", [*GOOD, ("   ", "good"), ("a text without its label", "")])
    assert problems(path) == [
        "error: t.csv, line 26: the 'text' cell is empty. Fill it in or delete the row",
        "error: t.csv, line 27: the 'label' cell is empty. Give the row its label or delete the row",
    ]


def test_many_rows_with_one_problem_list_five_then_count_the_rest(tmp_path: Path) -> None:
    path = table(tmp_path / "t.csv", [*GOOD, *[("", "good")] * 8])
    found = problems(path)
    assert found[:5] == [
        f"error: t.csv, line {n}: the 'text' cell is empty. Fill it in or delete the row" for n in range(26, 31)
    ]
    assert (
        found[5]
        == "error: t.csv, 3 more rows (line 31 to line 33): the 'text' cell is empty. Fill it in or delete the row"
    )


def test_texts_over_the_limit_are_named_with_the_limit_and_the_option(tmp_path: Path) -> None:
    path = table(tmp_path / "t.csv", [*GOOD, ("x" * 150, "good")])
    assert problems(path) == [
        "error: t.csv, line 26: the text has 150 characters; the limit is 100. Shorten it, or raise the limit with "
        "--max-chars"
    ]


def test_one_label_is_no_classifier(tmp_path: Path) -> None:
    path = table(tmp_path / "t.csv", [(f"text {i}", "spam") for i in range(30)])
    assert problems(path) == [
        "error: t.csv: only one label ('spam') in 30 rows. A classifier needs examples of two labels or more"
    ]


def test_a_label_too_rare_to_train_and_measure_says_the_minimum(tmp_path: Path) -> None:
    path = table(tmp_path / "t.csv", [*GOOD, ("rare one", "refund"), ("rare two", "refund")])
    assert problems(path) == [
        "error: t.csv: label 'refund' has 2 examples; each label needs at least 10 to train and measure it with "
        "5-fold cross-validation. Add examples of 'refund', or merge it into another label"
    ]


def test_the_same_text_with_two_labels_names_both_rows(tmp_path: Path) -> None:
    path = table(tmp_path / "t.csv", [*GOOD, ("a good text number 3", "bad")])
    assert problems(path) == [
        "error: t.csv, line 5: the same text has different labels: line 5 ('good'), line 26 ('bad'). Keep one "
        "label for it (edit or delete the other rows)"
    ]


def test_a_control_character_is_a_warning_since_training_drops_it(tmp_path: Path) -> None:
    path = table(tmp_path / "t.csv", [*GOOD, ("\bbackspaced review", "good")])
    assert problems(path) == [
        "warning: t.csv, line 26: the text holds a control character (U+0000-U+001F but tab and line breaks, or "
        "U+007F), which the API refuses in requests; it is trained on without it. Nothing to do; callers must "
        "leave such characters out of their texts"
    ]


def test_repeats_with_the_same_label_and_heavy_imbalance_are_warnings(tmp_path: Path) -> None:
    rows = [(f"common text {i}", "common") for i in range(110)] + [(f"rare text {i}", "rare") for i in range(10)]
    path = table(tmp_path / "t.csv", [*rows, rows[0]])
    report = check_table(path, "text", "label", 100, folds=5)
    assert report.errors == []
    assert [str(p) for p in report.warnings] == [
        "warning: t.csv: 1 rows repeat an earlier row's text and label; each text is trained on once. Nothing to "
        "do, unless the repeats were meant to be different texts",
        "warning: t.csv: heavy imbalance: 110 examples of 'common' against 10 of 'rare'. The card reports each "
        "label's precision and recall; more examples of the rare labels would help",
    ]
    assert len(report.records) == 120


def photos(root: Path, counts: dict[str, int]) -> Path:
    for label, count in counts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            (root / label / f"{i}.jpg").write_bytes(imagegen.encode(imagegen.photo(64, 48, seed=i), "JPEG"))
    return root


def test_an_image_folder_with_broken_huge_and_stray_files(tmp_path: Path) -> None:
    root = photos(tmp_path / "photos", {"cats": 10, "dogs": 10, "owls": 3})
    (root / "cats" / "broken.jpg").write_bytes(imagegen.truncated_jpeg()[:40])
    (root / "dogs" / "huge.png").write_bytes(imagegen.png_bomb(12000))  # under Pillow's own hard limit
    (root / "dogs" / "notes.txt").write_text("taken in spring")
    (root / "dogs" / ".DS_Store").write_bytes(b"\0")
    report = check_image_folder(root, MAX_PIXELS, folds=5)
    found = [str(p) for p in report.problems]
    assert found[0] == (
        "warning: photos: 1 file(s) without an image suffix are ignored: dogs/notes.txt. Rename them if they are "
        "images (.jpg, .jpeg, .png, .webp, .bmp, .gif)"
    )
    assert found[1].startswith("error: photos/cats/broken.jpg: does not decode as an image (")
    assert found[1].endswith("). Re-save it as JPEG or PNG, or delete it")
    assert found[2:] == [
        "error: photos/dogs/huge.png: the image has 12000x12000 = 144000000 pixels; the limit is 40000000 pixels. "
        "Scale it down, or delete it",
        "error: photos: label 'owls' has 3 examples; each label needs at least 10 to train and measure it with "
        "5-fold cross-validation. Add examples of 'owls', or merge it into another label",
    ]
    assert dict(report.labels) == {"cats": 10, "dogs": 10, "owls": 3}


def test_images_must_sit_in_one_folder_per_label(tmp_path: Path) -> None:
    root = photos(tmp_path / "photos", {"cats": 10, "dogs": 10})
    (root / "loose.jpg").write_bytes(imagegen.encode(imagegen.photo(), "JPEG"))
    assert [str(p) for p in check_image_folder(root, MAX_PIXELS, folds=5).problems] == [
        "error: photos: 1 file(s) directly in the folder (loose.jpg). Put each image in the sub-folder named after "
        "its label"
    ]
    assert [str(p) for p in check_image_folder(root / "cats" / "0.jpg", MAX_PIXELS, folds=5).problems] == [
        f"error: {root / 'cats' / '0.jpg'}: not a folder. Give an image task a folder with one sub-folder per label"
    ]


@pytest.mark.parametrize(
    ("name", "taken", "message"),
    [
        ("Support-Tickets", set(), "a task name is 1 to 40 lower-case letters, digits and underscores, starting"),
        ("status", set(), "error: task name 'status': the name is taken by the API or the UI. Choose another"),
        ("jobs", set(), "error: task name 'jobs': the name is taken by the API or the UI. Choose another"),
        (
            "tickets",
            {"tickets"},
            "error: task name 'tickets': a task of this name exists. Choose another name, or retrain it with "
            "`modelops task add tickets --replace ...`",
        ),
    ],
)
def test_task_names_that_would_clash_are_refused(name: str, taken: set[str], message: str) -> None:
    found = check_name(name, taken, RESERVED_TASK_NAMES, TASK_NAME_PATTERN)
    assert len(found) == 1
    assert message in str(found[0])
    assert check_name("tickets", set(), RESERVED_TASK_NAMES, TASK_NAME_PATTERN) == []
