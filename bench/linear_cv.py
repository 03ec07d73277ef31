"""`python -m bench.linear_cv`: a text task's linear member, each candidate setting scored by k-fold
cross-validation on the training rows, beside the NB-weighted logistic regression of `BASELINES.md`.

Why: the served member's settings were chosen on a 1,000-review dev slice, where one standard error is about a
point, and on unseen reviews the baseline (binary word 1-3 grams of an exact vocabulary, min_df 2, C=0.5) beat
the served blend. Out-of-fold predictions put every training row in the comparison exactly once, and all
candidates are compared on the same rows, paired. The validation split is not read.

A candidate is hashed word n-grams (`handlers/linear.py`: the features the handler computes) of order
`ngrams` in `2**bits` buckets, buckets seen in fewer than `min_df` of the fold's training rows left out, NB
log-count ratio, L2 logistic regression with penalty C. Each text's 1-3 grams are hashed once; the other
orders and bucket counts are views of that.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from contract.catalog import DEFAULT_RECIPE, TextTask, load_catalog
from handlers.linear import words
from modelops.train.crossval import accuracy, fold_ids, out_of_fold, paired
from modelops.train.data import data_dir, training_sets
from modelops.train.linear_fit import linear_probabilities, linear_weights, nb_lr_baseline
from modelops.train.metrics import bootstrap_interval


@dataclass(frozen=True)
class Candidate:
    ngrams: int
    bits: int
    min_df: int
    c: float

    @property
    def name(self) -> str:
        return f"1-{self.ngrams} grams, 2^{self.bits}, min_df {self.min_df}, C {self.c:g}"


def hashed_terms(texts: list[str], ngrams: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per text, the CRC-32 of each distinct term (as the handler hashes them) and the term's order."""
    hashes, orders = [], []
    for text in texts:
        tokens = words(text)
        terms: dict[str, int] = {t: 1 for t in tokens}
        for n in range(2, ngrams + 1):
            terms.update((" ".join(tokens[i : i + n]), n) for i in range(len(tokens) - n + 1))
        hashes.append(np.fromiter((zlib.crc32(t.encode("utf-8")) for t in terms), dtype=np.int64, count=len(terms)))
        orders.append(np.fromiter(terms.values(), dtype=np.int8, count=len(terms)))
    return hashes, orders


def features(hashes: list[np.ndarray], orders: list[np.ndarray], ngrams: int, bits: int) -> Any:
    """Binary (texts, 2**bits) CSR matrix of the texts' buckets of terms up to order `ngrams`."""
    from scipy import sparse

    mask = (1 << bits) - 1
    rows = [np.unique(h[o <= ngrams] & mask) for h, o in zip(hashes, orders, strict=True)]
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    indices = np.concatenate(rows)
    data = np.ones(len(indices), dtype=np.float32)
    return sparse.csr_matrix((data, indices, indptr), shape=(len(rows), 1 << bits))


def nb_lr(x_train: Any, y_train: np.ndarray, x_test: Any, c: float, min_df: int) -> np.ndarray:
    """Two-class NB-weighted LR fitted as training fits it (`linear_fit.linear_weights`), on the columns seen in
    at least `min_df` training rows; probabilities of the test rows."""
    from scipy import sparse

    kept = (np.asarray(x_train.sum(axis=0)).ravel() >= min_df).astype(np.float32)
    weight, bias = linear_weights(x_train @ sparse.diags(kept), y_train, 2, c)
    return linear_probabilities(x_test, weight, bias)


def fold_fit(x: Any, labels: np.ndarray, candidate: Candidate, train: np.ndarray, held: np.ndarray) -> np.ndarray:
    return nb_lr(x[train], labels[train], x[held], candidate.c, candidate.min_df)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.linear_cv", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="sentiment")
    parser.add_argument("--recipe", default="fast", help="the recipe whose dev slice is held out of the rows")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--ngrams", default="2,3")
    parser.add_argument("--bits", default="20,22")
    parser.add_argument("--min-df", default="1,2")
    parser.add_argument("--c", default="0.3,1,3")
    parser.add_argument("--data", default=None)
    parser.add_argument("--out", default=None, help="JSON results file")
    args = parser.parse_args(argv)
    spec = load_catalog()[args.task]
    assert isinstance(spec, TextTask), f"{args.task} is not a text task"
    recipe = spec.recipe(args.recipe or DEFAULT_RECIPE)
    sets = training_sets(spec, data_dir(args.data), 13, None, None, dev_examples=getattr(recipe, "dev_examples", 0))
    texts = [ex.text for ex in sets.train]
    labels = np.array([ex.label for ex in sets.train])
    folds = fold_ids(labels.tolist(), args.folds, seed=13)
    print(f"{args.task}: {len(texts)} training rows, {args.folds} folds", flush=True)

    started = time.perf_counter()
    ngram_orders = [int(n) for n in args.ngrams.split(",")]
    hashes, orders = hashed_terms(texts, max(ngram_orders))
    print(f"hashed in {time.perf_counter() - started:.0f}s", flush=True)
    results: dict[str, Any] = {}
    oof: dict[str, np.ndarray] = {}

    def record(name: str, probabilities: np.ndarray, seconds: float, weights_mb: float | None) -> None:
        oof[name] = probabilities
        hit = probabilities.argmax(axis=1) == labels
        results[name] = {
            "accuracy": round(accuracy(probabilities, labels), 4),
            "ci95": bootstrap_interval(hit.tolist()),
            "seconds_per_fit": round(seconds / args.folds, 1),
            **({"weights_mb": weights_mb} if weights_mb is not None else {}),
        }
        print(f"{name:<44} {results[name]['accuracy']:.4f} {results[name]['ci95']}  {seconds / args.folds:.1f} s/fit")

    t = time.perf_counter()
    record(
        "baseline: NB-LR exact 1-3 grams, min_df 2, C 0.5",
        out_of_fold(folds, 2, nb_lr_baseline(texts, labels, 2)),
        time.perf_counter() - t,
        None,
    )
    for ngrams in ngram_orders:
        for bits in (int(b) for b in args.bits.split(",")):
            x = features(hashes, orders, ngrams, bits)
            for min_df in (int(m) for m in args.min_df.split(",")):
                for c in (float(v) for v in args.c.split(",")):
                    candidate = Candidate(ngrams, bits, min_df, c)
                    t = time.perf_counter()
                    probabilities = out_of_fold(folds, 2, partial(fold_fit, x, labels, candidate))
                    record(candidate.name, probabilities, time.perf_counter() - t, round((1 << bits) * 2 * 4 / 1e6, 1))
    base = next(iter(oof))
    best = max((n for n in oof if n != base), key=lambda n: results[n]["accuracy"])
    for name in oof:
        if name != base:
            results[name]["vs_baseline"] = paired(oof[name], oof[base], labels)
    print(f"best hashed: {best}; paired vs baseline: {json.dumps(results[best]['vs_baseline'])}")
    if args.out:
        Path(args.out).write_text(
            json.dumps({"task": args.task, "rows": len(texts), "folds": args.folds, "results": results}, indent=2)
            + "\n",
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
