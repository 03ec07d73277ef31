"""Fit the linear member of a text blend (`handlers/linear.py`): NB-weighted logistic regression on hashed
binary word n-grams, with scikit-learn at build time (serving reads two tensors).

Per class (one-vs-rest; a single model for two classes) the log-count ratio r = log((p/|p|) / (q/|q|)) of each
bucket, with p and q the smoothed bucket counts in and outside the class, scales the binary features before
an L2 logistic regression (liblinear); the served weight is coef x r. The penalty C is chosen on the dev
slice, never on the validation split the model card reports.
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

# Inverse regularisation strengths tried (larger = weaker penalty); hashed bits and n-gram order, chosen on the
# sentiment dev slice (1,000 reviews): 1-2 grams 0.915, 1-3 grams 0.907 (C=3); 2**20 buckets 0.913, 2**21 0.909.
C_GRID = (0.3, 1.0, 3.0)
BITS = 20
NGRAMS = 2


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


def fit_linear(
    texts: list[str], labels: list[int], dev_texts: list[str], dev_labels: list[int], classes: int
) -> tuple[LinearTextModel, dict[str, float]]:
    """Fit for each C in C_GRID, keep the best on the dev slice (ties: the stronger penalty); returns it and its
    record for the model card."""
    started = time.perf_counter()
    features = feature_matrix(texts, BITS, NGRAMS)
    y = np.array(labels)
    fitted = []
    for c in C_GRID:
        weight, bias = linear_weights(features, y, classes, c)
        model = LinearTextModel(BITS, NGRAMS, torch.from_numpy(weight), torch.from_numpy(bias))
        predicted = model.predict_proba(dev_texts).argmax(-1).tolist() if dev_texts else []
        accuracy = sum(p == t for p, t in zip(predicted, dev_labels, strict=True)) / max(1, len(dev_labels))
        log_event(logger, "linear.fit", c=c, dev_accuracy=round(accuracy, 4), rows=len(texts))
        fitted.append((accuracy, -c, model))
    accuracy, negative_c, model = max(fitted, key=lambda fit: fit[:2])
    record = {
        "features": f"binary word 1-{NGRAMS} grams hashed into 2**{BITS} buckets, NB log-count ratio",
        "rows": len(texts),
        "c": -negative_c,
        "dev_accuracy": round(accuracy, 4),
        "fit_seconds": round(time.perf_counter() - started, 1),
    }
    return model, record
