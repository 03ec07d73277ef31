"""TorchServe handler for the text classifiers (sentiment, disaster tweets).

The archive is self-contained: this file, its support modules (`classifier_base.py`, `text_encoding.py`,
`text_normalise.py`, `linear.py`, `calibration.py`, `ort_model.py`), the model/tokenizer files, `model.onnx`
when it serves an ONNX Runtime variant, the linear member's weights when the recipe blends one, `task.json`
(the catalog entry, recipe settings and what training chose on its dev slice: blend weight, temperature) and
`model_card.json`. Nothing here imports the build package.

Per batch: normalise the texts (tweets), run the encoder, blend in the linear member, apply the temperature.
An explanation (TorchServe's explanations API) occludes the words of one text (`word_occlusion.py`).
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from contract.serving import TextServing
from handlers.calibration import temper
from handlers.classifier_base import BatchClassifier, RequestError, request_body
from handlers.linear import LinearTextModel, blend, token_spans
from handlers.linear import words as linear_words
from handlers.ort_model import ONNX_FILE, OrtModel
from handlers.pooled_encoder import PooledClassifier
from handlers.text_encoding import TextEncoder, window
from handlers.text_normalise import NORMALISERS
from handlers.word_occlusion import ENCODER_PASSES, Word, spans, spread, without, word_weights, words_of


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
    """The encoder member is one of three (`encoder` in task.json): `finetuned`, a fine-tuned sequence
    classifier; `frozen`, a frozen sentence encoder with a linear head (`pooled_encoder.py`); `none`, when
    cross-validation found it did not earn its cost and the linear member answers alone."""

    config: TextServing

    def load(self, model_dir: Path) -> None:
        self.normalise = NORMALISERS[self.config.normalise]
        self.linear = LinearTextModel.load(model_dir) if self.config.linear_weight > 0 else None
        if self.config.encoder == "none":
            if self.linear is None or self.config.linear_weight != 1.0:
                raise ValueError("a text model without an encoder needs its linear member at weight 1")
            return
        self.encoder = TextEncoder.load(model_dir)
        if self.config.runtime != "torch":
            self.session = OrtModel(model_dir / ONNX_FILE, self.config.threads_per_worker)
        elif self.config.encoder == "frozen":
            self.model = PooledClassifier.load(model_dir)
        else:
            from transformers import AutoModelForSequenceClassification  # only here: ONNX workers never import it

            self.model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()

    def torch_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The fp32 torch model's class logits: what an ONNX variant is exported from."""
        if self.config.encoder == "frozen":
            logits: torch.Tensor = self.model(input_ids=input_ids, attention_mask=attention_mask)
            return logits
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    def logits(self, encoded: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if self.config.runtime == "torch":
            return self.torch_logits(encoded["input_ids"], encoded["attention_mask"])
        if self.config.runtime == "onnx-int8":
            # int8 activations are quantised with one scale per tensor, taken from the batch's own range: each
            # text runs alone (unpadded), so an answer never depends on the requests it was batched with and
            # equals the one the model card's accuracy was measured with. In-process sweep, one thread: sentiment 18%
            # slower than batches of 4, disaster 11% faster (no padding).
            lengths = encoded["attention_mask"].sum(dim=1).tolist()
            rows = [{name: t[i : i + 1, :length] for name, t in encoded.items()} for i, length in enumerate(lengths)]
            return torch.cat([self.session(row) for row in rows])
        return self.session(encoded)

    def parse(self, row: dict[str, Any]) -> str:
        return extract_text(row, self.config.max_chars)

    def encoder_probabilities(self, texts: list[str]) -> torch.Tensor:
        """Class probabilities of the encoder alone, for normalised texts."""
        encoded = self.encoder.encode(texts, self.config.max_length, self.config.head_tokens)
        with torch.inference_mode():
            return self.logits(encoded).softmax(dim=-1)

    def infer(self, inputs: list[str]) -> list[list[float]]:
        texts = [self.normalise(text) for text in inputs]
        if self.config.encoder == "none":
            assert self.linear is not None  # load() refuses a model with neither
            return temper(self.linear.predict_proba(texts), self.config.temperature).tolist()
        probabilities = self.encoder_probabilities(texts)
        if self.linear is not None:
            probabilities = blend(probabilities, self.linear.predict_proba(texts), self.config.linear_weight)
        return temper(probabilities, self.config.temperature).tolist()

    def describe(self, probabilities: Sequence[float]) -> dict[str, Any]:
        return label_scores(probabilities, self.config.labels)

    def _variants(self, item: str, words: list[Word]) -> list[str]:
        """The text, then the text without each word, normalised: what a member reads in each case."""
        return [self.normalise(t) for t in [item, *(without(item, [w]) for w in words)]]

    def _encoder_words(self, item: str, words: list[Word], variants: list[str] | None) -> list[int]:
        """The words whose removal changes what the encoder reads. Normalised tweets (a few hundred characters):
        those whose removal changes the token ids. Other texts, from the tokenizer's offsets, once: the words
        overlapping a token of the head+tail window, and, for a text just over the budget, the words long enough
        that removing one lets the encoder read the whole rest."""
        max_length, head = self.config.max_length, self.config.head_tokens
        if variants is not None:
            ids = self.encoder.token_ids(variants, max_length, head)
            return [i for i in range(len(words)) if ids[i + 1] != ids[0]]
        offsets = self.encoder.offsets(item)
        overflow = len(offsets) - max_length
        if overflow <= 0:
            return list(range(len(words)))
        read = [span for span in window(offsets, max_length, head) if span[1] > span[0]]
        read_starts = [start for start, _ in read]
        token_starts = sorted(start for start, end in offsets if end > start)
        changed = []
        for i, word in enumerate(words):
            last = bisect_left(read_starts, word.end) - 1  # read spans are sorted and disjoint
            tokens = bisect_left(token_starts, word.end) - bisect_left(token_starts, word.start)
            if (last >= 0 and read[last][1] > word.start) or tokens >= overflow:
                changed.append(i)
        return changed

    def _linear_without_each(self, item: str, words: list[Word], variants: list[str] | None) -> torch.Tensor:
        """The linear member's probabilities for the text, then for the text without each word. Un-normalised
        texts take `LinearTextModel.deletion_logits` (exact, linear in the text's length: a 20,000-character
        review re-read once per word would take ~30 s); normalised tweets are re-read."""
        assert self.linear is not None
        tokens = token_spans(item)
        if variants is not None or [t for _, _, t in tokens] != linear_words(item):
            return self.linear.predict_proba(variants or self._variants(item, words))
        starts = [start for start, _, _ in tokens]
        ranges = [(0, 0)] + [(bisect_left(starts, w.start), bisect_left(starts, w.end)) for w in words]
        with torch.inference_mode():
            return self.linear.deletion_logits([t for _, _, t in tokens], ranges).softmax(dim=-1)

    def explain(self, item: str, headers: dict[str, str]) -> dict[str, Any]:
        """The answer for one text, and each word's weight: how much the blended probability of the predicted
        label (before the temperature, where the members add up) drops when the word is removed."""
        words = words_of(item)
        variants = None if self.config.normalise == "none" else self._variants(item, words)
        # each member: its blend weight, and its probabilities for the text then for each occlusion
        members: dict[str, tuple[float, torch.Tensor]] = {}
        groups: list[list[int]] = []
        if self.config.encoder != "none":
            groups = spans(self._encoder_words(item, words, variants), ENCODER_PASSES)
            occluded = [without(item, [words[i] for i in group]) for group in groups]
            encoder = self.encoder_probabilities([self.normalise(t) for t in [item, *occluded]])
            members["encoder"] = (1.0 if self.linear is None else 1.0 - self.config.linear_weight, encoder)
        if self.linear is not None:
            members["linear"] = (self.config.linear_weight, self._linear_without_each(item, words, variants))
        blended = torch.stack([weight * probs[0] for weight, probs in members.values()]).sum(dim=0)
        answer = self.describe(temper(blended[None], self.config.temperature)[0].tolist())
        target = self.config.labels.index(answer["label"])
        shares = {}
        for name, (weight, probs) in members.items():
            drops = probs[0, target] - probs[1:, target]
            shares[name] = weight * (spread(drops, groups, len(words)) if name == "encoder" else drops)
        return {
            **answer,
            "explanation": {
                "method": "occlusion",
                "target": answer["label"],
                "words": word_weights(words, shares),
                "members": {
                    name: {"blend_weight": round(weight, 4), **label_scores(probs[0].tolist(), self.config.labels)}
                    for name, (weight, probs) in members.items()
                },
                "encoder_words_per_pass": len(groups[0]) if groups else 1,
            },
        }


handle = TextClassifier().entry_point
