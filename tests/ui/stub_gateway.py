"""A stand-in for the gateway's HTTP API, so UI tests can serve any `/v1/models` answer they like.

`/v1/models` lists `models` as given; each model's route answers every input with its last label, its
`/explain` route adds an explanation computed from the input (word weights from a few keywords and the words'
lengths, a photo's grid from its brightness), and `/v1/models/<task>` answers a card made from the labels (503
for the tasks in `cardless`). Requests are recorded as (method, path) in `requests`.
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from PIL import Image, ImageDraw, ImageOps

LOOPBACK = "127.0.0.1"
VERSION = "7"
AGAINST = {"not", "no", "never", "but", "dull", "boring", "bad"}  # words weighed against the stub's label
MEMBERS = {"encoder": 0.75, "linear": 0.25}  # the blend of a text model, by blend weight
_MARKUP = re.compile(r"<br\s*/?>", re.IGNORECASE)
INPUT_SIZE, CELLS = 224, 7


def model_entry(task: str, kind: str, labels: list[str], description: str, max_chars: int | None) -> dict[str, Any]:
    """One `/v1/models` entry with a ready model, shaped like the gateway's."""
    return {
        "task": task,
        "kind": kind,
        "route": f"/v1/{task}",
        "model_name": f"{task}_model",
        "description": description,
        "labels": labels,
        "max_chars": max_chars,
        "loaded": {
            "version": VERSION,
            "ready": True,
            "ready_workers": 1,
            "workers": 1,
            "batch_size": 8,
            "max_batch_delay_ms": 5,
        },
        "training": None,
    }


def _result(model: dict[str, Any], top_k: int | None = None) -> dict[str, Any]:
    labels = model["labels"]
    scores = {label: 0.1 / (len(labels) - 1) for label in labels[:-1]} | {labels[-1]: 0.9}
    result: dict[str, Any] = {
        "label": labels[-1],
        "score": 0.9,
        "model": {"name": model["model_name"], "version": VERSION},
        "latency_ms": 1.5,
    }
    if top_k is None:
        result["scores"] = scores
    else:
        ranked = sorted(scores.items(), key=lambda item: -item[1])[:top_k]
        result["top_k"] = [{"label": label, "score": score} for label, score in ranked]
    return result


def _text_explanation(model: dict[str, Any], text: str) -> dict[str, Any]:
    """Every word (markup blanked, offsets into `text`, as the real handler does), weighted by its length,
    against the label when it is a keyword of AGAINST, split between the members by their blend weight."""
    words = []
    for match in re.finditer(r"\S+", _MARKUP.sub(lambda m: " " * len(m.group()), text)):
        sign = -1 if match.group().strip(".,;:!?").lower() in AGAINST else 1
        weight = sign * len(match.group()) / 100
        members = {name: weight * share for name, share in MEMBERS.items()}
        words.append(
            {"start": match.start(), "end": match.end(), "word": match.group(), "weight": weight, "members": members}
        )
    label = model["labels"][-1]
    answer = _result(model)
    members = {
        name: {"blend_weight": share, "label": label, "score": answer["score"], "scores": answer["scores"]}
        for name, share in MEMBERS.items()
    }
    return {"method": "occlusion", "target": label, "words": words, "members": members, "encoder_words_per_pass": 1}


def _uploaded_image(content_type: str, body: bytes) -> bytes:
    """The `image` field of a multipart body."""
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    part = next(p for p in message.iter_parts() if p.get_param("name", header="content-disposition") == "image")
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload


def _painted(crop: Image.Image, grid: list[list[float]]) -> str:
    """`crop` with each cell tinted red (weight >= 0) or blue, opacity by its share of the largest |weight|, like
    the real handler's overlay: base64 PNG."""
    scale = max(abs(weight) for row in grid for weight in row) or 1.0
    layer = Image.new("RGBA", crop.size)
    draw = ImageDraw.Draw(layer)
    side = crop.width // len(grid)
    for row, weights in enumerate(grid):
        for col, weight in enumerate(weights):
            colour = (230, 40, 40) if weight >= 0 else (40, 90, 230)
            box = (col * side, row * side, (col + 1) * side - 1, (row + 1) * side - 1)
            draw.rectangle(box, fill=(*colour, round(255 * 0.6 * abs(weight) / scale)))
    png = io.BytesIO()
    Image.alpha_composite(crop.convert("RGBA"), layer).convert("RGB").save(png, "PNG")
    return base64.b64encode(png.getvalue()).decode("ascii")


def _image_explanation(model: dict[str, Any], data: bytes, overlay: bool) -> dict[str, Any]:
    """The grid over the photo's centre crop: cells brighter than the crop's mean support the label, darker ones
    argue against it; with `overlay`, also the crop painted with it."""
    crop = ImageOps.fit(Image.open(io.BytesIO(data)).convert("RGB"), (INPUT_SIZE, INPUT_SIZE))
    cells = list(crop.convert("L").resize((CELLS, CELLS), Image.Resampling.BOX).tobytes())
    mean = sum(cells) / len(cells)
    grid = [[round((cells[row * CELLS + col] - mean) / 255, 4) for col in range(CELLS)] for row in range(CELLS)]
    explanation = {"method": "occlusion", "target": model["labels"][-1], "grid": grid, "input_size": INPUT_SIZE}
    return explanation | ({"overlay_png_base64": _painted(crop, grid)} if overlay else {})


def _card(model: dict[str, Any]) -> dict[str, Any]:
    """A model card shaped like `model_card.json`: 10 validation examples per label, 8 of them right."""
    labels = model["labels"]
    confusion = [
        [8 if col == row else 2 if col == (row + 1) % len(labels) else 0 for col in range(len(labels))]
        for row in range(len(labels))
    ]
    per_class = {label: {"precision": 0.8, "recall": 0.8, "f1": 0.8, "support": 10} for label in labels}
    return {
        "task": model["task"],
        "version": VERSION,
        "labels": labels,
        "built_at": "2026-11-29T12:34:31Z",
        "base_checkpoint": "pypi:stub_checkpoint",
        "recipe": {"name": "fast", "epochs": 1.0},
        "data": {"train_examples_used": 400, "dev_examples_used": 40, "validation_examples_used": 10 * len(labels)},
        "validation": {
            "examples": 10 * len(labels),
            "accuracy": 0.8,
            "accuracy_ci95": [0.7125, 0.8651],
            "ece": 0.0348,
            "macro_f1": 0.8,
            "per_class": per_class,
            "labels": labels,
            "confusion": confusion,
        },
        "runtime": {"requested": "onnx-int8", "served": "onnx-int8"},
    }


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # the test output stays quiet
        pass

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _not_found(self) -> None:
        self._answer(404, {"error": {"code": "not_found", "message": f"no route {self.path}"}})

    def _card(self, task: str) -> None:
        stub = self.server.stub
        model = next((m for m in stub.models if m["task"] == task), None)
        if model is None:
            self._not_found()
        elif task in stub.cardless:
            message = f"no model card for '{model['model_name']}': torchserve: connection refused"
            self._answer(503, {"error": {"code": "model_not_ready", "message": message}})
        else:
            self._answer(
                200, {"task": task, "model_name": model["model_name"], "version": VERSION, "card": _card(model)}
            )

    def do_GET(self) -> None:
        stub = self.server.stub
        stub.requests.append(("GET", self.path))
        if self.path == "/healthz":
            self._answer(200, {"status": "ok"})
        elif self.path == "/readyz":
            models = {m["model_name"]: True for m in stub.models}
            self._answer(200, {"status": "ready", "models": models, "upstreams": {}})
        elif self.path == "/v1/models":
            self._answer(200, {"models": stub.models, "torchserve": "reachable", "upstreams": []})
        elif self.path.startswith("/v1/models/"):
            self._card(self.path.removeprefix("/v1/models/"))
        else:
            self._not_found()

    def do_POST(self) -> None:
        stub = self.server.stub
        url = urlsplit(self.path)
        stub.requests.append(("POST", url.path))
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        route = url.path.removesuffix("/explain")
        explain = route != url.path
        model = next((m for m in stub.models if m["route"] == route), None)
        if model is None:
            self._not_found()
        elif model["kind"] == "text":
            payload = json.loads(body)
            texts = payload["texts"] if "texts" in payload else [payload["text"]]
            results = [
                _result(model) | ({"explanation": _text_explanation(model, text)} if explain else {}) for text in texts
            ]
            self._answer(200, {"results": results} if "texts" in payload else results[0])
        else:
            query = parse_qs(url.query)
            result = _result(model, int(query.get("top_k", ["5"])[0]))
            if explain:
                image = _uploaded_image(self.headers["Content-Type"], body)
                result["explanation"] = _image_explanation(model, image, query.get("overlay") == ["true"])
            self._answer(200, result)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    stub: StubGateway


class StubGateway:
    def __init__(self, models: list[dict[str, Any]], port: int = 0) -> None:
        self.models = models
        self.requests: list[tuple[str, str]] = []
        self.cardless: set[str] = set()  # tasks whose card answers 503, as when no TorchServe could describe it
        self._server = _Server((LOOPBACK, port), _Handler)
        self._server.stub = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def __enter__(self) -> StubGateway:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
