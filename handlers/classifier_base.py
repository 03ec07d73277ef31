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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from contract.serving import ServingConfig, read_serving
from contract.wire import CARD_FIELD, MAX_INSTANCES, SPEC_FIELD, TASK_SPEC_FILE

logger = logging.getLogger(__name__)


class RequestError(ValueError):
    """One request in a batch is unusable; the message is returned to its caller."""


def request_body(row: dict[str, Any]) -> Any:
    """The payload of one TorchServe request row (decoded JSON for application/json, else bytes)."""
    body = row.get("data")
    return row.get("body") if body is None else body


def request_headers(context: Any, idx: int) -> dict[str, str]:
    """The headers TorchServe passed with request `idx` of a batch, names lower-cased: the caller's HTTP headers
    and TorchServe's own markers (`explain: True` on its explanations API, `describe: True` on a customized
    describe)."""
    try:
        headers = context.get_all_request_header(idx) or {}
    except (AttributeError, IndexError, KeyError):
        headers = {}
    return {str(name).lower(): str(value) for name, value in headers.items()}


def request_ids(headers: Sequence[dict[str, str]]) -> list[str]:
    """The gateway's X-Request-ID of each request in the batch ("-" when a caller sent none), so a request
    can be followed from the gateway's access log into the model batch that served it."""
    return [h.get("x-request-id", "-") for h in headers]


def marked(headers: dict[str, str], marker: str) -> bool:
    """Whether TorchServe marked this request as an `explain` or `describe` job (it sends the string "True")."""
    return headers.get(marker) == "True"


def kserve_instances(row: dict[str, Any]) -> list[Any] | None:
    """The inputs of a KServe v1 request (`{"instances": [...]}`), or None for a plain request.

    KServe's TorchServe runtime forwards `/v1/models/<m>:predict` bodies as they are. The handler reads them
    itself instead of through TorchServe's `service_envelope=kserve`, which parses only the first request of a
    batch: with dynamic batching on, the envelope would drop every other caller's request in it.
    """
    body = request_body(row)
    if not isinstance(body, dict) or "instances" not in body:
        return None
    instances = body["instances"]
    if not isinstance(instances, list) or not instances:
        raise RequestError("field 'instances' must be a non-empty list")
    if len(instances) > MAX_INSTANCES:
        raise RequestError(f"field 'instances' has {len(instances)} items; the limit is {MAX_INSTANCES}")
    return instances


@dataclass(frozen=True)
class Slot:
    """One TorchServe request of a batch: which valid inputs are its own, and how to answer it."""

    inputs: range
    kserve: bool = False
    error: str | None = None


def error_result(message: str) -> dict[str, Any]:
    return {"error": {"code": "invalid_request", "message": message}}


class BatchClassifier:
    """initialize -> (per batch) parse each row -> infer valid ones -> describe each result."""

    def __init__(self) -> None:
        self.initialized = False
        self.config: ServingConfig
        self.model_info: dict[str, str] = {}
        self.card: dict[str, Any] = {}
        self.spec_json = ""

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

    def explain(self, item: Any, headers: dict[str, str]) -> dict[str, Any]:
        """One valid input -> the labelled part of its answer plus an `explanation` (the request's headers carry
        its options)."""
        raise NotImplementedError

    # --- the shared flow -----------------------------------------------------------------------------

    def initialize(self, context: Any) -> None:
        model_dir = Path(context.system_properties["model_dir"])
        self.config = read_serving(model_dir)
        # One intra-op thread per worker: on a small CPU box several single-threaded workers beat one worker
        # fighting over all cores (measured ~3x under load); scale out with workers, not threads.
        threads = self.config.threads_per_worker
        torch.set_num_threads(threads)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        manifest = getattr(context, "manifest", None) or {}
        self.model_info = {
            "name": context.model_name,
            "version": str(manifest.get("model", {}).get("modelVersion", "unknown")),
            # which recipe built it (`quick` first, then better ones): archives before it said nothing
            **({"recipe": self.config.recipe} if self.config.recipe is not None else {}),
        }
        started = time.perf_counter()
        card = model_dir / "model_card.json"
        # what `GET /models/{name}?customized=true` returns: the card of the archive this worker loaded
        self.card = json.loads(card.read_text(encoding="utf-8")) if card.exists() else {}
        spec = model_dir / TASK_SPEC_FILE
        self.spec_json = spec.read_text(encoding="utf-8") if spec.exists() else ""  # archives before it: none
        self.load(model_dir)
        self.initialized = True
        logger.info(
            "loaded model=%s version=%s runtime=%s threads=%d in %.1fs",
            self.model_info["name"],
            self.model_info["version"],
            self.config.runtime,
            threads,
            time.perf_counter() - started,
        )

    def preprocess(self, rows: Sequence[dict[str, Any]]) -> tuple[list[Any], list[Slot]]:
        """Validate each request; return the valid inputs and, per request slot, where its inputs are."""
        inputs: list[Any] = []
        slots: list[Slot] = []
        for row in rows:
            try:
                instances = kserve_instances(row)
                parsed = [self.parse(row)] if instances is None else self._parse_instances(instances)
            except RequestError as exc:
                slots.append(Slot(range(0), error=str(exc)))
                continue
            slots.append(Slot(range(len(inputs), len(inputs) + len(parsed)), kserve=instances is not None))
            inputs.extend(parsed)
        return inputs, slots

    def _parse_instances(self, instances: list[Any]) -> list[Any]:
        """A KServe v1 request is valid only as a whole: one bad instance refuses it, naming the instance."""
        parsed = []
        for idx, instance in enumerate(instances):
            try:
                parsed.append(self.parse({"body": instance}))
            except RequestError as exc:
                raise RequestError(f"instances[{idx}]: {exc}") from None
        return parsed

    def postprocess(
        self,
        probabilities: list[list[float]],
        slots: list[Slot],
        context: Any,
        explained: dict[int, dict[str, Any]] | None = None,
    ) -> list[Any]:
        """Reassemble one response per request slot, in order, marking bad slots as 400s. `explained` holds the
        finished answers of the inputs that asked for an explanation, by input index."""
        explained = explained or {}
        responses: list[Any] = []
        for idx, slot in enumerate(slots):
            if slot.error is not None:
                context.set_response_status(400, slot.error, idx)
                responses.append(error_result(slot.error))
                continue
            answers = [
                {
                    "task": self.config.task,
                    **(explained[i] if i in explained else self.describe(probabilities[i])),
                    "model": self.model_info,
                }
                for i in slot.inputs
            ]
            responses.append({"predictions": answers} if slot.kserve else answers[0])
        return responses

    def handle(self, rows: Sequence[dict[str, Any]], context: Any) -> list[Any]:
        started = time.perf_counter()
        headers = [request_headers(context, idx) for idx in range(len(rows))]
        if any(marked(h, "describe") for h in headers):
            return [{CARD_FIELD: json.dumps(self.card), SPEC_FIELD: self.spec_json} for _ in rows]
        inputs, slots = self.preprocess(rows)
        # Predictions and explanations of one model share its queue, so one batch can hold both: each request
        # gets what it asked for. Explanations run one input at a time (each is many forward passes).
        explaining = {
            i: headers[idx] for idx, slot in enumerate(slots) if marked(headers[idx], "explain") for i in slot.inputs
        }
        plain = [i for i in range(len(inputs)) if i not in explaining]
        probabilities: list[list[float]] = [[] for _ in inputs]
        for i, row in zip(plain, self.infer([inputs[i] for i in plain]) if plain else [], strict=True):
            probabilities[i] = row
        explained = {i: self.explain(inputs[i], options) for i, options in explaining.items()}
        responses = self.postprocess(probabilities, slots, context, explained)
        # One line per model batch: how well dynamic batching fills batches, how many slots were rejected, how
        # many inputs were explained, and which gateway requests rode in it.
        logger.info(
            "batch model=%s size=%d invalid=%d inputs=%d explained=%d ms=%.1f request_ids=%s",
            self.model_info["name"],
            len(rows),
            sum(slot.error is not None for slot in slots),
            len(inputs),
            len(explained),
            (time.perf_counter() - started) * 1000,
            ",".join(request_ids(headers)),
        )
        return responses

    def entry_point(self, data: Sequence[dict[str, Any]] | None, context: Any) -> list[Any] | None:
        """TorchServe's module-level `handle`: initialises on the first (data-less) call."""
        if not self.initialized:
            self.initialize(context)
        if data is None:
            return None
        return self.handle(data, context)
