"""TorchServe handler for the text classifiers (sentiment, disaster tweets).

The archive is self-contained: this file, `classifier_base.py`, the model/tokenizer files, `task.json` (the
catalog entry the model was built for) and `model_card.json`. Nothing here imports the build package.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from classifier_base import BatchClassifier, RequestError, request_body


def extract_text(row: dict[str, Any], max_chars: int) -> str:
    """Pull the `text` field out of one request row and validate it.

    TorchServe decodes `application/json` bodies into dicts; other content types arrive as bytes.
    """
    body = request_body(row)
    if isinstance(body, (bytes, bytearray)):
        try:
            body = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise RequestError('body must be a JSON object like {"text": "..."}') from None
    if not isinstance(body, dict):
        raise RequestError('body must be a JSON object like {"text": "..."}')
    text = body.get("text")
    if not isinstance(text, str):
        raise RequestError("field 'text' is required and must be a string")
    if not text.strip():
        raise RequestError("field 'text' must not be empty or only whitespace")
    if len(text) > max_chars:
        raise RequestError(f"field 'text' has {len(text)} characters; the limit is {max_chars}")
    return text


def label_scores(probabilities: Sequence[float], labels: Sequence[str]) -> dict[str, Any]:
    """`{label, score, scores}` for one row of class probabilities, rounded for JSON."""
    scores = {label: round(float(p), 4) for label, p in zip(labels, probabilities, strict=True)}
    best = max(range(len(labels)), key=lambda i: probabilities[i])
    return {"label": labels[best], "score": scores[labels[best]], "scores": scores}


class TextClassifier(BatchClassifier):
    def load(self, model_dir: Path) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir)
        self.model.eval()

    def parse(self, row: dict[str, Any]) -> str:
        return extract_text(row, int(self.config["max_chars"]))

    def infer(self, inputs: list[str]) -> list[list[float]]:
        # Pad to the longest text in this batch, not to max_length: short tweets stay cheap.
        encoded = self.tokenizer(
            inputs,
            padding="longest",
            truncation=True,
            max_length=int(self.config["max_length"]),
            return_tensors="pt",
        )
        with torch.inference_mode():
            logits = self.model(**encoded).logits
        return logits.softmax(dim=-1).tolist()

    def describe(self, probabilities: Sequence[float]) -> dict[str, Any]:
        return label_scores(probabilities, self.config["labels"])


handle = TextClassifier().entry_point
