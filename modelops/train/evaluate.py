"""Score a model on a labelled file: in-process through the handler code, or through the live gateway.

In-process evaluation loads the archive with the very handler TorchServe runs (same parsing, preprocessing
and batching code), so `--via` answers must agree with it; a disagreement points at the serving path.
"""

from __future__ import annotations

import importlib
import json
import statistics
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from contract.catalog import TaskSpec
from contract.serving import SERVING_FILE, read_serving, with_changes
from modelops.kinds import KINDS
from modelops.train.data import Example, load_split, read_rows
from modelops.train.metrics import classification_report


class _Context:
    """The slice of TorchServe's context the handlers read at start-up."""

    def __init__(self, model_dir: Path, model_name: str, manifest: dict[str, Any]) -> None:
        self.system_properties = {"model_dir": str(model_dir)}
        self.model_name = model_name
        self.manifest = manifest


def _chunks(items: list[Example], size: int) -> Iterator[list[Example]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _argmax(row: list[float]) -> int:
    return max(range(len(row)), key=row.__getitem__)


@dataclass
class Predictions:
    """Each example's predicted label index and that label's score (its confidence, for the calibration error)."""

    labels: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    def add(self, label: int, score: float) -> None:
        self.labels.append(label)
        self.scores.append(score)


class Timer:
    """Wall time of each request (or in-process batch), for the report's latency and throughput figures."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(self, *_: object) -> None:
        self.seconds.append(time.perf_counter() - self._started)

    def report(self, examples: int) -> dict[str, float]:
        if not self.seconds:
            return {}
        ms = sorted(1000 * s for s in self.seconds)
        return {
            "requests": len(ms),
            "latency_ms_p50": round(statistics.median(ms), 1),
            "latency_ms_p95": round(ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))], 1),
            "examples_per_s": round(examples / sum(self.seconds), 2),
        }


def load_handler(spec: TaskSpec, model_dir: Path, overrides: dict[str, Any] | None = None) -> Any:
    """An unpacked archive (or a package staging folder) loaded by the very handler class TorchServe runs.

    `overrides` replace serving settings in the folder's `task.json` before loading: `runtime` (e.g. `torch`
    to measure the fp32 model an optimised archive was exported from), `threads_per_worker`.
    """
    module, name = KINDS[spec.kind].handler.split(":")
    handler: Any = getattr(importlib.import_module(module), name)()  # imported only here: each pulls in torch
    if overrides:
        changed = with_changes(read_serving(model_dir), overrides)
        (model_dir / SERVING_FILE).write_text(changed.to_json(), encoding="utf-8")
    manifest_file = model_dir / "MAR-INF" / "MANIFEST.json"
    manifest = json.loads(manifest_file.read_text()) if manifest_file.exists() else {}
    handler.initialize(_Context(model_dir, spec.model_name, manifest))
    return handler


@contextmanager
def open_handler(spec: TaskSpec, archive: Path, overrides: dict[str, Any] | None = None) -> Iterator[Any]:
    """The archive unpacked into a temporary folder and loaded by its handler (see `load_handler`)."""
    with tempfile.TemporaryDirectory(prefix=f"handler-{spec.task}-") as unpacked:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(unpacked)
        yield load_handler(spec, Path(unpacked), overrides)


def handler_rows(spec: TaskSpec, examples: list[Example]) -> list[dict[str, Any]]:
    """Examples as TorchServe request rows (JSON text bodies, raw image bytes)."""
    return [KINDS[spec.kind].handler_row(spec, ex.text) for ex in examples]


def handler_probabilities(
    handler: Any, spec: TaskSpec, examples: list[Example], batch: int, timer: Timer
) -> Iterator[list[float]]:
    """Run a loaded handler on the examples, batch by batch: each example's class probabilities."""
    for chunk in tqdm(list(_chunks(examples, batch)), desc=f"evaluate {spec.task} in-process", unit="batch"):
        rows = handler_rows(spec, chunk)
        with timer:
            inputs, slots = handler.preprocess(rows)
            if rejected := [slot.error for slot in slots if slot.error]:
                raise ValueError(f"the handler rejected examples: {rejected}")
            answered = handler.infer(inputs)
        yield from answered


def predict_with(handler: Any, spec: TaskSpec, examples: list[Example], batch: int, timer: Timer) -> Predictions:
    """Run a loaded handler on the examples, batch by batch: each one's label and score."""
    predictions = Predictions()
    for row in handler_probabilities(handler, spec, examples, batch, timer):
        best = _argmax(row)
        predictions.add(best, row[best])
    return predictions


def predict_via(spec: TaskSpec, base_url: str, examples: list[Example], batch: int, timer: Timer) -> Predictions:
    """Send the examples through the gateway in requests of `batch` examples, one at a time, as a client would."""
    predictions = Predictions()
    with httpx.Client(base_url=base_url, timeout=120) as http:
        for chunk in tqdm(list(_chunks(examples, batch)), desc=f"evaluate {spec.task} via {base_url}", unit="request"):
            body = KINDS[spec.kind].gateway_body(spec, [ex.text for ex in chunk])
            request = http.build_request("POST", spec.route, **body)
            with timer:
                response = http.send(request)
            response.raise_for_status()
            for result in response.json()["results"]:
                predictions.add(spec.labels.index(result["label"]), float(result["score"]))
    return predictions


def read_labelled(spec: TaskSpec, data: Path, limit: int | None = None) -> list[Example]:
    """The examples to score: a file in the shared data's format, or a data folder's validation split (the
    same seeded split training held out, so the score is comparable with the model card's)."""
    examples = load_split(spec, data).validation if data.is_dir() else read_rows(spec, data)
    return examples[:limit]


def evaluate(
    spec: TaskSpec,
    data: Path,
    *,
    archive: Path | None = None,
    via: str | None = None,
    limit: int | None = None,
    batch: int | None = None,
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class figures and confusion, plus request latency and throughput."""
    examples = read_labelled(spec, data, limit)
    batch = batch or KINDS[spec.kind].per_request
    timer = Timer()
    if via:
        predictions = predict_via(spec, via.rstrip("/"), examples, batch, timer)
    elif archive is not None:
        with open_handler(spec, archive) as handler:
            predictions = predict_with(handler, spec, examples, batch, timer)
    else:
        raise ValueError("give an archive to load in-process, or a gateway URL with via")
    report = classification_report([ex.label for ex in examples], predictions.labels, spec.labels, predictions.scores)
    return {
        "task": spec.task,
        "data": str(data),
        "source": via or str(archive),
        "batch": batch,
        **report,
        **timer.report(len(examples)),
    }


def format_report(report: dict[str, Any]) -> str:
    """The report as a plain-text table: headline figures, per-class precision/recall, confusion matrix."""
    labels = report["labels"]
    low, high = report["accuracy_ci95"]
    width = max(12, *(len(label) for label in labels))
    lines = [
        f"task {report['task']}  examples {report['examples']}  source {report['source']}",
        f"accuracy {report['accuracy']:.4f} (95% bootstrap interval {low:.4f}-{high:.4f})  "
        f"macro-F1 {report['macro_f1']:.4f}  calibration error (ECE) {report['ece']:.4f}",
        f"{report.get('requests', 0)} requests of up to {report['batch']}: latency p50 "
        f"{report.get('latency_ms_p50', 0)} ms, p95 {report.get('latency_ms_p95', 0)} ms, "
        f"{report.get('examples_per_s', 0)} examples/s",
        "",
        f"{'label':<{width}} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}",
    ]
    for label in labels:
        c = report["per_class"][label]
        lines.append(f"{label:<{width}} {c['precision']:>9.4f} {c['recall']:>7.4f} {c['f1']:>7.4f} {c['support']:>8}")
    lines += ["", "confusion (rows: true, columns: predicted, in label order)"]
    lines += [
        f"{label:<{width}} " + " ".join(f"{n:>5}" for n in row)
        for label, row in zip(labels, report["confusion"], strict=True)
    ]
    return "\n".join(lines)
