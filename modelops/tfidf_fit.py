"""Fit the TF-IDF member of a text blend (`handlers/tfidf.py`): vocabulary, idf and an L2 logistic regression.

The regression is fitted with full-batch L-BFGS in torch on the sparse features (seconds for 8,000 reviews),
so the build needs no scikit-learn. Its regularisation strength is chosen on the development slice, never on
the validation split the model card reports.
"""

from __future__ import annotations

import logging
import math
from collections import Counter

import torch

from handlers.tfidf import TfidfClassifier, term_counts
from modelops.logs import log_event

logger = logging.getLogger(__name__)

# Inverse regularisation strengths tried (scikit-learn's C: larger = weaker penalty).
C_GRID = (4.0, 16.0, 64.0)


def build_vocabulary(texts: list[str], min_df: int) -> tuple[dict[str, int], torch.Tensor]:
    """Terms seen in at least `min_df` texts, and their smoothed idf: ln((1 + n) / (1 + df)) + 1."""
    document_frequency: Counter[str] = Counter()
    for text in texts:
        document_frequency.update(term_counts(text).keys())
    terms = sorted(t for t, df in document_frequency.items() if df >= min_df)
    n = len(texts)
    idf = torch.tensor([math.log((1 + n) / (1 + document_frequency[t])) + 1.0 for t in terms])
    return {t: i for i, t in enumerate(terms)}, idf


def fit_logistic(
    model: TfidfClassifier, features: torch.Tensor, labels: torch.Tensor, c: float, max_iter: int = 100
) -> None:
    """Minimise mean cross-entropy + ||W||^2 / (2 C n) in place (scikit-learn's objective divided by C n)."""
    weight = torch.zeros_like(model.weight, requires_grad=True)
    bias = torch.zeros_like(model.bias, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe")
    penalty = 1.0 / (2.0 * c * len(labels))

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = torch.sparse.mm(features, weight) + bias
        loss = torch.nn.functional.cross_entropy(logits, labels) + penalty * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    model.weight, model.bias = weight.detach(), bias.detach()


def fit_tfidf(
    texts: list[str],
    labels: list[int],
    dev_texts: list[str],
    dev_labels: list[int],
    classes: int,
    min_df: int = 2,
) -> tuple[TfidfClassifier, dict[str, float]]:
    """Fit on (texts, labels) for each C in C_GRID, keep the best on the dev slice; returns it and its record."""
    vocabulary, idf = build_vocabulary(texts, min_df)
    model = TfidfClassifier(vocabulary, idf, torch.zeros(len(vocabulary), classes), torch.zeros(classes))
    features = model.features(texts)
    dev_features = model.features(dev_texts)
    y = torch.tensor(labels)
    dev_y = torch.tensor(dev_labels)
    fitted = []
    for c in C_GRID:
        fit_logistic(model, features, y, c)
        accuracy = (model.logits(dev_features).argmax(-1) == dev_y).float().mean().item() if dev_labels else 0.0
        log_event(logger, "tfidf.fit", c=c, dev_accuracy=round(accuracy, 4), terms=len(vocabulary))
        fitted.append((accuracy, -c, model.weight, model.bias))
    # best dev accuracy; on a tie the stronger penalty (smaller C)
    accuracy, negative_c, model.weight, model.bias = max(fitted, key=lambda fit: fit[:2])
    c = -negative_c
    return model, {"terms": len(vocabulary), "min_df": min_df, "c": c, "dev_accuracy": round(accuracy, 4)}
