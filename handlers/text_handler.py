"""TorchServe handler for the text classifiers (sentiment, disaster tweets).

TorchServe hands `handle` a *batch* of independent requests (dynamic batching). Each request is validated on
its own: a bad one gets a 400 for its slot only, the others are still classified. Parsing, validation and
turning logits into labelled results are plain functions so they are tested without TorchServe.

The archive is self-contained: this file, the model/tokenizer files, `task.json` (the catalog entry the model
was built for) and `model_card.json`. Nothing here imports the build package.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)


class RequestError(ValueError):
    """One request in a batch is unusable; the message is returned to its caller."""


def extract_text(row: dict[str, Any], max_chars: int) -> str:
    """Pull the `text` field out of one TorchServe request row and validate it.

    TorchServe decodes `application/json` bodies into dicts; other content types arrive as bytes.
    """
    body = row.get("data")
    if body is None:
        body = row.get("body")
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


def to_results(probabilities: Sequence[Sequence[float]], labels: Sequence[str]) -> list[dict[str, Any]]:
    """Turn per-class probabilities into `{label, score, scores}` results, scores rounded for JSON."""
    results = []
    for row in probabilities:
        scores = {label: round(float(p), 4) for label, p in zip(labels, row, strict=True)}
        best = max(range(len(labels)), key=lambda i: row[i])
        results.append({"label": labels[best], "score": scores[labels[best]], "scores": scores})
    return results


def error_result(message: str) -> dict[str, Any]:
    return {"error": {"code": "invalid_request", "message": message}}


class TextClassifier:
    """Loads the fine-tuned encoder once per worker and classifies batches of texts."""

    def __init__(self) -> None:
        self.initialized = False
        self.config: dict[str, Any] = {}
        self.model_info: dict[str, str] = {}

    def initialize(self, context: Any) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        model_dir = Path(context.system_properties["model_dir"])
        self.config = json.loads((model_dir / "task.json").read_text(encoding="utf-8"))
        # One intra-op thread per worker: on a small CPU box several single-threaded workers beat one worker
        # fighting over all cores (measured ~3x under load); scale out with workers, not threads.
        threads = int(self.config.get("threads_per_worker", 1))
        torch.set_num_threads(threads)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        manifest = getattr(context, "manifest", None) or {}
        self.model_info = {
            "name": context.model_name,
            "version": str(manifest.get("model", {}).get("modelVersion", "unknown")),
        }
        started = time.perf_counter()
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir)
        self.model.eval()
        self.initialized = True
        logger.info(
            "loaded model=%s version=%s threads=%d in %.1fs",
            self.model_info["name"],
            self.model_info["version"],
            threads,
            time.perf_counter() - started,
        )

    def preprocess(self, rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[str | None]]:
        """Validate each request; return the valid texts and, per slot, an error message or None."""
        texts: list[str] = []
        errors: list[str | None] = []
        for row in rows:
            try:
                texts.append(extract_text(row, int(self.config["max_chars"])))
                errors.append(None)
            except RequestError as exc:
                errors.append(str(exc))
        return texts, errors

    def inference(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        # Pad to the longest text in this batch, not to max_length: short tweets stay cheap.
        encoded = self.tokenizer(
            texts,
            padding="longest",
            truncation=True,
            max_length=int(self.config["max_length"]),
            return_tensors="pt",
        )
        with torch.inference_mode():
            logits = self.model(**encoded).logits
        return logits.softmax(dim=-1).tolist()

    def postprocess(self, probabilities: list[list[float]], errors: list[str | None], context: Any) -> list[Any]:
        """Reassemble one response per request slot, in order, marking bad slots as 400s."""
        results = iter(to_results(probabilities, self.config["labels"]))
        responses: list[Any] = []
        for idx, error in enumerate(errors):
            if error is None:
                responses.append({"task": self.config["task"], **next(results), "model": self.model_info})
            else:
                context.set_response_status(400, error, idx)
                responses.append(error_result(error))
        return responses

    def handle(self, rows: Sequence[dict[str, Any]], context: Any) -> list[Any]:
        started = time.perf_counter()
        texts, errors = self.preprocess(rows)
        responses = self.postprocess(self.inference(texts), errors, context)
        # One line per model batch: how well dynamic batching fills batches, and how many slots were rejected.
        logger.info(
            "batch model=%s size=%d invalid=%d ms=%.1f",
            self.model_info["name"],
            len(rows),
            len(rows) - len(texts),
            (time.perf_counter() - started) * 1000,
        )
        return responses


_service = TextClassifier()


def handle(data: Sequence[dict[str, Any]] | None, context: Any) -> list[Any] | None:
    """TorchServe entry point (module-level function form)."""
    if not _service.initialized:
        _service.initialize(context)
    if data is None:
        return None
    return _service.handle(data, context)
