"""`python -m bench.baselines --task T [--via URL]`: the simple text methods of `../shared/data/BASELINES.md`, on
this project's own rows, against the served model.

BASELINES.md scores its methods on held-out rows this project does not have, and the model cards score on the
validation split, so the two sets of figures compare only roughly (the split's difficulty differs by a few
points). Here each method, with the settings BASELINES.md states, is fitted on the task's training rows (the
dev slice and `extra_datasets` included: the methods have nothing to choose) and scored on the validation
split. With `--via`, the served model answers the same rows through the gateway, and the script prints the
paired difference with its 95% bootstrap interval: the model clearly beats a baseline only when that interval
lies above zero. Text tasks only: the photo baseline (frozen features + logistic regression) needs minutes of
embedding, and the served pose model's margin over its held-out figure is not in doubt (0.77 against 0.69).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from contract.catalog import load_catalog
from modelops.train.data import Example, data_dir, training_sets
from modelops.train.evaluate import Timer, predict_via
from modelops.train.metrics import bootstrap_interval, paired_difference_interval

Method = Callable[[list[str], np.ndarray, list[str]], np.ndarray]


def tfidf_lr(c: float, **vectoriser: Any) -> Method:
    """TF-IDF word 1-2 grams + logistic regression (lbfgs), as BASELINES.md's TF-IDF rows."""

    def fit_predict(texts: list[str], labels: np.ndarray, queries: list[str]) -> np.ndarray:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        tfidf = TfidfVectorizer(ngram_range=(1, 2), **vectoriser)
        model = LogisticRegression(C=c, max_iter=2000).fit(tfidf.fit_transform(texts), labels)
        return np.asarray(model.predict(tfidf.transform(queries)))

    return fit_predict


def nb_lr(c: float) -> Method:
    """Binary word 1-3 grams scaled by their log-count ratio + logistic regression (liblinear), as BASELINES.md's
    NB-weighted rows (two classes)."""

    def fit_predict(texts: list[str], labels: np.ndarray, queries: list[str]) -> np.ndarray:
        from scipy import sparse
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.linear_model import LogisticRegression

        counts = CountVectorizer(ngram_range=(1, 3), binary=True)
        features = counts.fit_transform(texts)
        p = 1.0 + np.asarray(features[labels == 1].sum(axis=0)).ravel()
        q = 1.0 + np.asarray(features[labels == 0].sum(axis=0)).ravel()
        ratio = sparse.diags(np.log((p / p.sum()) / (q / q.sum())))
        model = LogisticRegression(C=c, solver="liblinear", max_iter=2000).fit(features @ ratio, labels)
        return np.asarray(model.predict(counts.transform(queries) @ ratio))

    return fit_predict


# BASELINES.md's methods per task, with its settings. Disaster: the text column only (the API receives text
# only; BASELINES.md's row also reads the keyword column).
METHODS: dict[str, dict[str, Method]] = {
    "sentiment": {
        "TF-IDF 1-2 grams (sublinear, min_df 2) + LR, C=8": tfidf_lr(8.0, sublinear_tf=True, min_df=2),
        "NB-weighted LR, binary 1-3 grams, C=0.5": nb_lr(0.5),
    },
    "disaster": {
        "TF-IDF 1-2 grams + LR, C=1": tfidf_lr(1.0),
        "NB-weighted LR, binary 1-3 grams, C=0.5": nb_lr(0.5),
    },
}


def _hits(predicted: Any, examples: list[Example]) -> list[bool]:
    return [int(p) == ex.label for p, ex in zip(predicted, examples, strict=True)]


def compare(task: str, data: Path, via: str | None) -> dict[str, Any]:
    """Each baseline's validation accuracy (with interval and fit time) and, given a gateway, the served
    model's, and the paired difference served - baseline."""
    spec = load_catalog()[task]
    sets = training_sets(spec, data, seed=13, train_examples=None, eval_examples=None)
    validation = sets.validation  # the split the model cards score, raw text as a client sends it
    texts, labels = [ex.text for ex in sets.train], np.array([ex.label for ex in sets.train])
    served = None
    if via:
        predictions = predict_via(spec, via.rstrip("/"), validation, 32, Timer())
        served = _hits(predictions.labels, validation)
    report: dict[str, Any] = {"task": task, "training_rows": len(texts), "validation_rows": len(validation)}
    if served is not None:
        report["served"] = {"source": via, "accuracy": round(sum(served) / len(served), 4)}
        report["served"]["accuracy_ci95"] = bootstrap_interval(served)
    report["baselines"] = []
    for name, method in METHODS[task].items():
        started = time.perf_counter()
        hits = _hits(method(texts, labels, [ex.text for ex in validation]), validation)
        row: dict[str, Any] = {
            "method": name,
            "accuracy": round(sum(hits) / len(hits), 4),
            "accuracy_ci95": bootstrap_interval(hits),
            "fit_seconds": round(time.perf_counter() - started, 1),
        }
        if served is not None:
            row["served_minus_baseline"] = round((sum(served) - sum(hits)) / len(hits), 4)
            row["difference_ci95"] = paired_difference_interval(served, hits)
        report["baselines"].append(row)
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"task {report['task']}: {report['training_rows']} training rows, {report['validation_rows']} validation"]
    if served := report.get("served"):
        low, high = served["accuracy_ci95"]
        lines.append(f"  served via {served['source']}: {served['accuracy']:.4f} ({low:.4f}-{high:.4f})")
    for row in report["baselines"]:
        low, high = row["accuracy_ci95"]
        line = f"  {row['method']}: {row['accuracy']:.4f} ({low:.4f}-{high:.4f}), fitted in {row['fit_seconds']} s"
        if "difference_ci95" in row:
            d_low, d_high = row["difference_ci95"]
            verdict = "clearly better" if d_low > 0 else "clearly worse" if d_high < 0 else "not distinguishable"
            difference = row["served_minus_baseline"]
            line += f"; served - baseline {difference:+.4f} ({d_low:+.4f} to {d_high:+.4f}): {verdict}"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baselines", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", action="append", choices=sorted(METHODS), help="repeatable; default: all")
    parser.add_argument("--data", help="data folder (default: $DATA_DIR or ../shared/data)")
    parser.add_argument("--via", help="gateway URL: also score the served model and the paired differences")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here too")
    args = parser.parse_args(argv)
    reports = [compare(task, data_dir(args.data), args.via) for task in args.task or sorted(METHODS)]
    for report in reports:
        print(format_report(report), flush=True)
    if args.out:
        args.out.write_text(json.dumps(reports, indent=2) + "\n")


if __name__ == "__main__":
    main()
