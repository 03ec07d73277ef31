"""Word 1-2 gram TF-IDF + logistic regression: the second member of a text task's blend.

Why it is served beside the encoder: on 2 CPU cores the fine-tuned MiniLM affordably reads 64-128 tokens of
a text, while TF-IDF reads every word, and the two make different mistakes, so averaging their probabilities
beats either alone (each member's validation score is in the model card). The model is plain tensors plus a
JSON term list, so serving needs neither scikit-learn nor pickle; fitting is `modelops.tfidf_fit`.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

VOCAB_FILE = "tfidf_vocab.json"
WEIGHTS_FILE = "tfidf.safetensors"
_WORD = re.compile(r"\b\w\w+\b")
# IMDb reviews carry literal line-break tags; they are markup, not words.
_MARKUP = re.compile(r"<br\s*/?>", re.IGNORECASE)


def term_counts(text: str) -> Counter[str]:
    """Lower-cased words of two or more characters, and adjacent word pairs."""
    words = _WORD.findall(_MARKUP.sub(" ", text).lower())
    return Counter(words + [f"{a} {b}" for a, b in itertools.pairwise(words)])


@dataclass
class TfidfClassifier:
    vocabulary: dict[str, int]
    idf: torch.Tensor  # (terms,)
    weight: torch.Tensor  # (terms, classes)
    bias: torch.Tensor  # (classes,)

    def features(self, texts: list[str]) -> torch.Tensor:
        """Sparse (texts, terms) matrix: sublinear tf x idf, each row scaled to unit length."""
        rows: list[int] = []
        cols: list[int] = []
        values: list[float] = []
        idf = self.idf.tolist()
        for row, text in enumerate(texts):
            known = [(self.vocabulary[t], n) for t, n in term_counts(text).items() if t in self.vocabulary]
            weights = [(1.0 + math.log(n)) * idf[col] for col, n in known]
            norm = math.sqrt(sum(w * w for w in weights)) or 1.0
            rows.extend([row] * len(known))
            cols.extend(col for col, _ in known)
            values.extend(w / norm for w in weights)
        return torch.sparse_coo_tensor(
            torch.tensor([rows, cols], dtype=torch.long).reshape(2, -1),
            torch.tensor(values, dtype=torch.float32),
            (len(texts), len(self.vocabulary)),
            check_invariants=False,  # indices are built in range just above
        ).coalesce()

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sparse.mm(features, self.weight) + self.bias

    def predict_proba(self, texts: list[str]) -> torch.Tensor:
        with torch.inference_mode():
            return self.logits(self.features(texts)).softmax(dim=-1)

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        terms = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        (folder / VOCAB_FILE).write_text(json.dumps(terms, ensure_ascii=False), encoding="utf-8")
        tensors = {"idf": self.idf, "weight": self.weight.detach(), "bias": self.bias.detach()}
        save_file({k: v.contiguous() for k, v in tensors.items()}, folder / WEIGHTS_FILE)

    @classmethod
    def load(cls, folder: Path) -> TfidfClassifier:
        from safetensors.torch import load_file

        terms = json.loads((folder / VOCAB_FILE).read_text(encoding="utf-8"))
        tensors = load_file(folder / WEIGHTS_FILE)
        return cls({t: i for i, t in enumerate(terms)}, tensors["idf"], tensors["weight"], tensors["bias"])


def blend(encoder: torch.Tensor, tfidf: torch.Tensor, tfidf_weight: float) -> torch.Tensor:
    """Weighted mean of the two members' class probabilities."""
    return (1.0 - tfidf_weight) * encoder + tfidf_weight * tfidf
