"""A stand-in for the gateway's HTTP API, so UI tests can serve any `/v1/models` answer they like.

`/v1/models` lists `models` as given; each model's route answers every input with its last label. Requests are
recorded as (method, path) in `requests`.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

LOOPBACK = "127.0.0.1"
VERSION = "7"


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
        "loaded": {"version": VERSION, "ready": True, "ready_workers": 1, "batch_size": 8, "max_batch_delay_ms": 5},
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

    def do_GET(self) -> None:
        stub = self.server.stub
        stub.requests.append(("GET", self.path))
        if self.path == "/healthz":
            self._answer(200, {"status": "ok"})
        elif self.path == "/readyz":
            self._answer(200, {"status": "ready", "models": {m["model_name"]: True for m in stub.models}})
        elif self.path == "/v1/models":
            self._answer(200, {"models": stub.models, "torchserve": "reachable", "upstreams": []})
        else:
            self._not_found()

    def do_POST(self) -> None:
        stub = self.server.stub
        url = urlsplit(self.path)
        stub.requests.append(("POST", url.path))
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        model = next((m for m in stub.models if m["route"] == url.path), None)
        if model is None:
            self._not_found()
        elif model["kind"] == "text":
            payload = json.loads(body)
            if "texts" in payload:
                self._answer(200, {"results": [_result(model) for _ in payload["texts"]]})
            else:
                self._answer(200, _result(model))
        else:
            top_k = int(parse_qs(url.query).get("top_k", ["5"])[0])
            self._answer(200, _result(model, top_k))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    stub: StubGateway


class StubGateway:
    def __init__(self, models: list[dict[str, Any]], port: int = 0) -> None:
        self.models = models
        self.requests: list[tuple[str, str]] = []
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
