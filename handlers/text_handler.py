"""TorchServe handler for the text classifiers (sentiment, disaster tweets).

The archive is self-contained: this file, its support modules (`classifier_base.py`, `text_encoding.py`,
`text_normalise.py`, `linear.py`, `calibration.py`, `ort_model.py`), the model/tokenizer files, `model.onnx`
when it serves an ONNX Runtime variant, the linear member's weights when the recipe blends one, `task.json`
(the catalog entry, recipe settings and what training chose on its dev slice: blend weight, temperature) and
`model_card.json`. Nothing here imports the build package.

Per batch: normalise the texts (tweets), run the encoder, blend in the linear member, apply the temperature.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from handlers.calibration import temper
from handlers.classifier_base import BatchClassifier, RequestError, request_body
from handlers.linear import LinearTextModel, blend
from handlers.ort_model import ONNX_FILE, OrtModel
from handlers.text_encoding import TextEncoder
from handlers.text_normalise import NORMALISERS


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
        self.encoder = TextEncoder.load(model_dir)
        if self.runtime == "torch":
            from transformers import AutoModelForSequenceClassification  # only here: ONNX workers never import it

            self.model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
        else:
            self.session = OrtModel(model_dir / ONNX_FILE, self.threads)
        self.normalise = NORMALISERS[self.config.get("normalise", "none")]
        self.linear_weight = float(self.config.get("linear_weight") or 0.0)
        self.linear = LinearTextModel.load(model_dir) if self.linear_weight > 0 else None
        self.temperature = float(self.config.get("temperature", 1.0))

    def logits(self, encoded: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if self.runtime == "torch":
            return self.model(**encoded).logits
        if self.runtime == "onnx-int8":
            # int8 activations are quantised with one scale per tensor, taken from the batch's own range: each
            # text runs alone (unpadded), so an answer never depends on the requests it was batched with and
            # equals the one the model card's accuracy was measured with. In-process sweep, one thread: sentiment 18%
            # slower than batches of 4, disaster 11% faster (no padding).
            lengths = encoded["attention_mask"].sum(dim=1).tolist()
            rows = [{name: t[i : i + 1, :length] for name, t in encoded.items()} for i, length in enumerate(lengths)]
            return torch.cat([self.session(row) for row in rows])
        return self.session(encoded)

    def parse(self, row: dict[str, Any]) -> str:
        return extract_text(row, int(self.config["max_chars"]))

    def infer(self, inputs: list[str]) -> list[list[float]]:
        texts = [self.normalise(text) for text in inputs]
        encoded = self.encoder.encode(texts, int(self.config["max_length"]), self.config.get("head_tokens"))
        with torch.inference_mode():
            probabilities = self.logits(encoded).softmax(dim=-1)
        if self.linear is not None:
            probabilities = blend(probabilities, self.linear.predict_proba(texts), self.linear_weight)
        return temper(probabilities, self.temperature).tolist()

    def describe(self, probabilities: Sequence[float]) -> dict[str, Any]:
        return label_scores(probabilities, self.config["labels"])


handle = TextClassifier().entry_point
