"""`python -m bench.own_task --kind text|image`: a user's own task, timed from data to answers on a running stack,
and scored on rows it never saw against the simple baseline it must beat.

The data is made from the shared data folder, as a user's would look: `text` is movie reviews labelled by their
star rating in three bands (`bad` 1-4, `good` 7-8, `excellent` 9-10), 600 rows to train and 2,000 others held
out; `image` is an ImageFolder of the human-action photos, 100 per action to train and 30 others held out. The
script runs `modelops task add` (the command a user runs; wall clock from its start until the gateway answers
the new route), then sends the held-out rows through the gateway, fits the baseline on the same training rows
(text: TF-IDF word 1-2 grams + logistic regression, its C chosen by 5-fold cross-validation; images: the
majority class), and prints both accuracies, the paired difference with its 95% interval, the card's
cross-validated figure, and the idle memory of the task's worker. Needs `make run` running.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from contract.catalog import REPO_ROOT, STATE_DIR, load_catalog
from modelops.kinds import KINDS
from modelops.local import services
from modelops.local.config import StackConfig
from modelops.local.s3 import local_s3_env
from modelops.store.s3 import ModelStore
from modelops.tasks.manage import find_task
from modelops.train.data import data_dir, read_rows
from modelops.train.evaluate import Timer, predict_via
from modelops.train.metrics import bootstrap_interval, paired_difference_interval

WORK = STATE_DIR / "bench" / "own-task"
RATING_BANDS = (("bad", range(1, 5)), ("good", range(7, 9)), ("excellent", range(9, 11)))


def rating_files(out: Path, train_rows: int, held_out: int, seed: int) -> tuple[Path, Path]:
    """Reviews labelled by star band: `train_rows` to train on, `held_out` others to score (from the 24,817
    reviews of both files)."""
    shared = data_dir() / "imdb"
    rows: list[tuple[str, str]] = []
    for texts_file, sources_file in (
        ("reviews.csv", "reviews_source.csv"),
        ("reviews_extra.csv", "reviews_extra_source.csv"),
    ):
        with (
            (shared / texts_file).open(encoding="utf-8", newline="") as texts,
            (shared / sources_file).open(encoding="utf-8", newline="") as sources,
        ):
            rows += [
                (review["text"], next(band for band, stars in RATING_BANDS if int(source["rating"]) in stars))
                for review, source in zip(csv.DictReader(texts), csv.DictReader(sources), strict=True)
            ]
    random.Random(seed).shuffle(rows)
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "ratings.csv", out / "ratings-held-out.csv"
    for path, part in zip(paths, (rows[held_out : held_out + train_rows], rows[:held_out]), strict=True):
        with path.open("w", encoding="utf-8", newline="") as fh:
            csv.writer(fh).writerows([("review", "stars"), *part])
    return paths


def action_folders(out: Path, per_label: int, held_out: int, seed: int) -> tuple[Path, Path]:
    """ImageFolder copies of the action photos: `per_label` per action to train on, `held_out` others to score."""
    pose = data_dir() / "pose"
    paths = out / "actions", out / "actions-held-out"
    for folder in paths:
        shutil.rmtree(folder, ignore_errors=True)
    for label in sorted(p.name for p in pose.iterdir() if p.is_dir()):
        photos = sorted((pose / label).glob("*.jpg"))
        random.Random(seed).shuffle(photos)
        for folder, part in zip(paths, (photos[held_out : held_out + per_label], photos[:held_out]), strict=True):
            (folder / label).mkdir(parents=True, exist_ok=True)
            for photo in part:
                (folder / label / photo.name).write_bytes(photo.read_bytes())
    return paths


def tfidf_held_out(train: list[str], labels: np.ndarray, queries: list[str]) -> tuple[np.ndarray, float]:
    """TF-IDF + logistic regression, C chosen by 5-fold cross-validation on the training rows only."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline

    # one-vs-rest liblinear, as the card's cross-validated baseline (`modelops.train.heads`)
    classifier = OneVsRestClassifier(LogisticRegression(solver="liblinear"))
    pipeline = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), classifier)
    grid = {"onevsrestclassifier__estimator__C": [1.0, 10.0, 100.0]}
    search = GridSearchCV(pipeline, grid, cv=5).fit(train, labels)
    return np.asarray(search.predict(queries)), float(search.best_params_["onevsrestclassifier__estimator__C"])


def worker_rss_mib(cfg: StackConfig, model: str) -> list[float]:
    import psutil

    from modelops.serve.torchserve import ManagementClient

    described = ManagementClient(cfg.management_url, cfg.key_file).describe(model) or []
    pids = [int(w["pid"]) for d in described for w in d.get("workers", []) if w.get("pid")]
    return [round(psutil.Process(pid).memory_info().rss / 2**20, 1) for pid in pids]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.own_task", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=("text", "image"), required=True)
    parser.add_argument("--name", help="the task's name (default: ratings, or actions)")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--rows",
        type=int,
        help="training rows (text, default 600, up to 22817) or photos per action (default 100, up to 370)",
    )
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    cfg = StackConfig.from_env()
    if not services.running_pid(cfg, "gateway"):
        raise SystemExit("no local stack runs: start it with `make run`")
    name = args.name or ("ratings" if args.kind == "text" else "actions")
    work = WORK / name
    if args.kind == "text":
        data, held_out = rating_files(work, args.rows or 600, 2000, args.seed)
        options = ["--text-column", "review", "--label-column", "stars"]
    else:
        data, held_out = action_folders(work, args.rows or 100, 30, args.seed)
        options = []
    command = [sys.executable, "-m", "modelops", "task", "add", name, "--data", str(data), "--replace", *options]
    started = time.monotonic()
    subprocess.run(command, cwd=REPO_ROOT, check=True)
    seconds = time.monotonic() - started
    for key, value in local_s3_env(cfg).items():
        os.environ.setdefault(key, value)
    spec = find_task(name, load_catalog(), ModelStore())
    train, test = read_rows(spec, data), read_rows(spec, held_out)
    predictions = predict_via(spec, cfg.gateway_url, test, KINDS[spec.kind].per_request, Timer())
    truth = np.array([ex.label for ex in test])
    served = np.array(predictions.labels) == truth
    train_labels = np.array([ex.label for ex in train])
    baseline: dict[str, Any]
    if args.kind == "text":
        predicted, c = tfidf_held_out([ex.text for ex in train], train_labels, [ex.text for ex in test])
        baseline = {"method": f"TF-IDF word 1-2 grams + logistic regression (C={c:g}, chosen by 5-fold CV)"}
    else:
        predicted = np.full(len(test), np.bincount(train_labels).argmax())
        baseline = {"method": "majority class"}
    other = predicted == truth
    card = httpx.get(f"{cfg.gateway_url}/v1/models/{name}", timeout=60).json()["card"]
    result = {
        "task": name,
        "kind": args.kind,
        "command": " ".join(["python", "-m", "modelops", "task", "add", name, "--data", data.name, *options]),
        "seconds_to_answers": round(seconds, 1),
        "train_rows": len(train),
        "held_out_rows": len(test),
        "labels": list(spec.labels),
        "cross_validated": {k: card["validation"][k] for k in ("accuracy", "accuracy_ci95", "macro_f1")},
        "served": card["cross_validation"].get("encoder", "image head"),
        "held_out": {
            "accuracy": round(float(served.mean()), 4),
            "accuracy_ci95": bootstrap_interval(served.tolist()),
        },
        "baseline": {
            **baseline,
            "accuracy": round(float(other.mean()), 4),
            "accuracy_ci95": bootstrap_interval(other.tolist()),
        },
        "difference": round(float(served.mean() - other.mean()), 4),
        "difference_ci95": paired_difference_interval(served.tolist(), other.tolist()),
        "train_seconds": card.get("train_seconds"),
        "worker_rss_mib": worker_rss_mib(cfg, spec.model_name),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
