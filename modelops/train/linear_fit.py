"""Fit the linear member of a text blend (`handlers/linear.py`): NB-weighted logistic regression on hashed
binary word n-grams, with scikit-learn at build time (serving reads two tensors).

Per class (one-vs-rest; a single model for two classes) the log-count ratio r = log((p/|p|) / (q/|q|)) of each
bucket, with p and q the smoothed bucket counts in and outside the class, scales the binary features before
an L2 logistic regression (liblinear); the served weight is coef x r. The bucket count and the penalty C are a
recipe's settings, chosen by k-fold cross-validation on the training rows (`python -m bench.linear_cv`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch

from contract.logs import log_event
from handlers.linear import LinearTextModel, buckets

logger = logging.getLogger(__name__)

# Word 1-2 grams: by 5-fold cross-validation on the 23,017 sentiment training rows, 1-3 grams scored lower at
# every bucket count, penalty and min_df tried (docs/models.md).
NGRAMS = 2
# The bucket count of recipes that do not set one (and of `heads` recipes): 2**20, 8 MB of weights for two
# classes; small datasets fill a fraction of it.
DEFAULT_BITS = 20


def feature_matrix(texts: list[str], bits: int, ngrams: int) -> Any:
    """Binary (texts, 2**bits) scipy CSR matrix of the texts' buckets (scipy is imported lazily, build time only)."""
    from scipy import sparse

    indices: list[int] = []
    indptr = [0]
    for text in texts:
        indices.extend(buckets(text, bits, ngrams))
        indptr.append(len(indices))
    data = np.ones(len(indices), dtype=np.float32)
    return sparse.csr_matrix((data, np.array(indices, dtype=np.int64), np.array(indptr)), shape=(len(texts), 1 << bits))


def log_count_ratio(features: Any, positive: np.ndarray) -> np.ndarray:
    """r per bucket for the rows in `positive` against the rest, smoothed by one count each."""
    p = 1.0 + np.asarray(features[positive].sum(axis=0)).ravel()
    q = 1.0 + np.asarray(features[~positive].sum(axis=0)).ravel()
    return np.log((p / p.sum()) / (q / q.sum())).astype(np.float32)


def linear_weights(features: Any, labels: np.ndarray, classes: int, c: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights (buckets, classes) and bias (classes,) for one C; with two classes class 0's logit is 0."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    buckets_n = features.shape[1]
    weight = np.zeros((buckets_n, classes), dtype=np.float32)
    bias = np.zeros(classes, dtype=np.float32)
    for cls in [1] if classes == 2 else range(classes):
        positive = labels == cls
        ratio = log_count_ratio(features, positive)
        model = LogisticRegression(C=c, solver="liblinear", max_iter=1000)
        model.fit(features @ sparse.diags(ratio), positive.astype(int))
        weight[:, cls] = model.coef_[0].astype(np.float32) * ratio
        bias[cls] = float(model.intercept_[0])
    return weight, bias


def linear_probabilities(features: Any, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Softmax of the rows' logits, as `LinearTextModel.predict_proba` computes them from the texts."""
    logits = np.asarray(features @ weight) + bias
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True))


def fit_linear(features: Any, labels: np.ndarray, classes: int, bits: int, c: float) -> LinearTextModel:
    """The served member, fitted on every row of `features` (from `feature_matrix(texts, bits, NGRAMS)`)."""
    started = time.perf_counter()
    weight, bias = linear_weights(features, labels, classes, c)
    seconds = round(time.perf_counter() - started, 1)
    log_event(logger, "linear.fit", bits=bits, c=c, rows=features.shape[0], seconds=seconds)
    return LinearTextModel(bits, NGRAMS, torch.from_numpy(weight), torch.from_numpy(bias))


def describe(bits: int, c: float, rows: int) -> dict[str, Any]:
    """The member's record in the model card."""
    return {
        "features": f"binary word 1-{NGRAMS} grams hashed into 2**{bits} buckets, NB log-count ratio",
        "rows": rows,
        "c": c,
    }


def exact_vocabulary() -> Any:
    """BASELINES.md's NB-LR features: scikit-learn's word tokens, binary 1-3 grams seen in at least 2 rows (the
    vocabulary is fitted on the rows a model trains on)."""
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(ngram_range=(1, 3), min_df=2, binary=True, dtype=np.float32)


# BASELINES.md's penalty for its NB-weighted logistic regression.
BASELINE_C = 0.5


def nb_lr_baseline(texts: list[str], labels: np.ndarray, classes: int) -> Any:
    """A `FitPredict` (`modelops.train.crossval`) of BASELINES.md's NB-weighted LR over `texts`: fitted on some
    rows, it returns the probabilities of others. The simple model a served text model must beat."""

    def fit_predict(train: np.ndarray, held_out: np.ndarray) -> np.ndarray:
        vectorizer = exact_vocabulary()
        x_train = vectorizer.fit_transform([texts[i] for i in train])
        weight, bias = linear_weights(x_train, labels[train], classes, BASELINE_C)
        return linear_probabilities(vectorizer.transform([texts[i] for i in held_out]), weight, bias)

    return fit_predict
