"""What every classifier handler shares: TorchServe's batch flow with per-request errors.

TorchServe hands `handle` a *batch* of independent requests (dynamic batching). Each request is parsed and
validated on its own: a bad one gets a 400 for its slot only, the valid ones are classified together in one
forward pass. Subclasses say how to load their model, parse one request and run a batch.
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


def request_body(row: dict[str, Any]) -> Any:
    """The payload of one TorchServe request row (decoded JSON for application/json, else bytes)."""
    body = row.get("data")
    return row.get("body") if body is None else body


def request_ids(context: Any, count: int) -> list[str]:
    """The gateway's X-Request-ID of each request in the batch ("-" when a caller sent none), so a request
    can be followed from the gateway's access log into the model batch that served it."""
    ids = []
    for idx in range(count):
        try:
            headers = context.get_all_request_header(idx) or {}
        except (AttributeError, IndexError, KeyError):
            headers = {}
        ids.append(next((str(v) for k, v in headers.items() if str(k).lower() == "x-request-id"), "-"))
    return ids


def error_result(message: str) -> dict[str, Any]:
    return {"error": {"code": "invalid_request", "message": message}}


class BatchClassifier:
    """initialize -> (per batch) parse each row -> infer valid ones -> describe each result."""

    def __init__(self) -> None:
        self.initialized = False
        self.config: dict[str, Any] = {}
        self.threads = 1
        self.runtime = "torch"
        self.model_info: dict[str, str] = {}

    # --- what subclasses provide ---------------------------------------------------------------------

    def load(self, model_dir: Path) -> None:
        raise NotImplementedError

    def parse(self, row: dict[str, Any]) -> Any:
        """One request -> model input; raises RequestError with a message for the caller."""
        raise NotImplementedError

    def infer(self, inputs: list[Any]) -> list[list[float]]:
        """Valid inputs -> class probabilities, one row per input."""
        raise NotImplementedError

    def describe(self, probabilities: Sequence[float]) -> dict[str, Any]:
        """One row of probabilities -> the labelled part of the answer."""
        raise NotImplementedError

    # --- the shared flow -----------------------------------------------------------------------------

    def initialize(self, context: Any) -> None:
        model_dir = Path(context.system_properties["model_dir"])
        self.config = json.loads((model_dir / "task.json").read_text(encoding="utf-8"))
        # One intra-op thread per worker: on a small CPU box several single-threaded workers beat one worker
        # fighting over all cores (measured ~3x under load); scale out with workers, not threads.
        threads = int(self.config.get("threads_per_worker", 1))
        torch.set_num_threads(threads)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        self.threads = threads
        # `torch` (fp32) or an ONNX Runtime variant exported at package time (archives before it: torch)
        self.runtime = str(self.config.get("runtime", "torch"))
        manifest = getattr(context, "manifest", None) or {}
        self.model_info = {
            "name": context.model_name,
            "version": str(manifest.get("model", {}).get("modelVersion", "unknown")),
        }
        started = time.perf_counter()
        self.load(model_dir)
        self.initialized = True
        logger.info(
            "loaded model=%s version=%s runtime=%s threads=%d in %.1fs",
            self.model_info["name"],
            self.model_info["version"],
            self.runtime,
            threads,
            time.perf_counter() - started,
        )

    def preprocess(self, rows: Sequence[dict[str, Any]]) -> tuple[list[Any], list[str | None]]:
        """Validate each request; return the valid inputs and, per slot, an error message or None."""
        inputs: list[Any] = []
        errors: list[str | None] = []
        for row in rows:
            try:
                inputs.append(self.parse(row))
                errors.append(None)
            except RequestError as exc:
                errors.append(str(exc))
        return inputs, errors

    def postprocess(self, probabilities: list[list[float]], errors: list[str | None], context: Any) -> list[Any]:
        """Reassemble one response per request slot, in order, marking bad slots as 400s."""
        results = iter(probabilities)
        responses: list[Any] = []
        for idx, error in enumerate(errors):
            if error is None:
                described = self.describe(next(results))
                responses.append({"task": self.config["task"], **described, "model": self.model_info})
            else:
                context.set_response_status(400, error, idx)
                responses.append(error_result(error))
        return responses

    def handle(self, rows: Sequence[dict[str, Any]], context: Any) -> list[Any]:
        started = time.perf_counter()
        inputs, errors = self.preprocess(rows)
        responses = self.postprocess(self.infer(inputs) if inputs else [], errors, context)
        # One line per model batch: how well dynamic batching fills batches, how many slots were rejected, and
        # which gateway requests rode in it.
        logger.info(
            "batch model=%s size=%d invalid=%d ms=%.1f request_ids=%s",
            self.model_info["name"],
            len(rows),
            len(rows) - len(inputs),
            (time.perf_counter() - started) * 1000,
            ",".join(request_ids(context, len(rows))),
        )
        return responses

    def entry_point(self, data: Sequence[dict[str, Any]] | None, context: Any) -> list[Any] | None:
        """TorchServe's module-level `handle`: initialises on the first (data-less) call."""
        if not self.initialized:
            self.initialize(context)
        if data is None:
            return None
        return self.handle(data, context)
