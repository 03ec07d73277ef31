"""Score a model on a labelled file: in-process through the handler code, or through the live gateway.

In-process evaluation loads the archive with the very handler TorchServe runs (same parsing, preprocessing
and batching code), so `--via` answers must agree with it; a disagreement points at the serving path.
"""

from __future__ import annotations

import json
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from modelops.catalog import REPO_ROOT, TaskSpec
from modelops.data import Example, read_rows
from modelops.metrics import classification_report

HANDLERS = REPO_ROOT / "handlers"
TEXTS_PER_REQUEST = 32
IMAGES_PER_REQUEST = 8


class _Context:
    """The slice of TorchServe's context the handlers read at start-up."""

    def __init__(self, model_dir: Path, model_name: str, manifest: dict[str, Any]) -> None:
        self.system_properties = {"model_dir": str(model_dir)}
        self.model_name = model_name
        self.manifest = manifest


def _chunks(items: list[Example], size: int) -> Iterator[list[Example]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _text(spec: TaskSpec, example: Example) -> str:
    """Texts longer than the route accepts are cut to its limit, the same way for both paths."""
    return example.text[: spec.max_chars]


def _argmax(row: list[float]) -> int:
    return max(range(len(row)), key=row.__getitem__)


def predict_in_process(spec: TaskSpec, archive: Path, examples: list[Example]) -> list[int]:
    """Unpack the archive and run its handler class on the examples, batch by batch."""
    if str(HANDLERS) not in sys.path:
        sys.path.insert(0, str(HANDLERS))  # the handlers import their siblings flat, as inside an archive
    if spec.kind == "image":
        from image_handler import ImageClassifier as Handler
    else:
        from text_handler import TextClassifier as Handler
    with tempfile.TemporaryDirectory(prefix=f"evaluate-{spec.task}-") as unpacked:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(unpacked)
        manifest = json.loads((Path(unpacked) / "MAR-INF" / "MANIFEST.json").read_text())
        handler = Handler()
        handler.initialize(_Context(Path(unpacked), spec.model_name, manifest))
        predictions: list[int] = []
        batch = IMAGES_PER_REQUEST if spec.kind == "image" else TEXTS_PER_REQUEST
        for chunk in tqdm(list(_chunks(examples, batch)), desc=f"evaluate {spec.task} in-process", unit="batch"):
            if spec.kind == "image":
                rows = [{"body": Path(ex.text).read_bytes()} for ex in chunk]
            else:
                rows = [{"body": {"text": _text(spec, ex)}} for ex in chunk]
            inputs, errors = handler.preprocess(rows)
            if any(errors):
                raise ValueError(f"the handler rejected examples: {[e for e in errors if e]}")
            predictions.extend(_argmax(row) for row in handler.infer(inputs))
    return predictions


def predict_via(spec: TaskSpec, base_url: str, examples: list[Example]) -> list[int]:
    """Send the examples through the gateway in batched requests, as a client would."""
    predictions: list[int] = []
    with httpx.Client(base_url=base_url, timeout=120) as http:
        if spec.kind == "image":
            batches = list(_chunks(examples, IMAGES_PER_REQUEST))
            for chunk in tqdm(batches, desc=f"evaluate {spec.task} via {base_url}", unit="request"):
                files = [("images", (Path(ex.text).name, Path(ex.text).read_bytes())) for ex in chunk]
                response = http.post(spec.route, files=files, params={"top_k": 1})
                response.raise_for_status()
                predictions.extend(spec.labels.index(r["label"]) for r in response.json()["results"])
        else:
            batches = list(_chunks(examples, TEXTS_PER_REQUEST))
            for chunk in tqdm(batches, desc=f"evaluate {spec.task} via {base_url}", unit="request"):
                response = http.post(spec.route, json={"texts": [_text(spec, ex) for ex in chunk]})
                response.raise_for_status()
                predictions.extend(spec.labels.index(r["label"]) for r in response.json()["results"])
    return predictions


def evaluate(
    spec: TaskSpec, data: Path, *, archive: Path | None = None, via: str | None = None, limit: int | None = None
) -> dict[str, Any]:
    examples = read_rows(spec, data)[:limit]
    if via:
        predictions = predict_via(spec, via.rstrip("/"), examples)
    elif archive is not None:
        predictions = predict_in_process(spec, archive, examples)
    else:
        raise ValueError("give an archive to load in-process, or a gateway URL with via")
    report = classification_report([ex.label for ex in examples], predictions, spec.labels)
    return {"task": spec.task, "data": str(data), "source": via or str(archive), **report}


def format_report(report: dict[str, Any]) -> str:
    """The report as a plain-text table: headline figures, per-class precision/recall, confusion matrix."""
    labels = report["labels"]
    width = max(12, *(len(label) for label in labels))
    lines = [
        f"task {report['task']}  examples {report['examples']}  source {report['source']}",
        f"accuracy {report['accuracy']:.4f}  macro-F1 {report['macro_f1']:.4f}",
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
