"""`task add`'s wait for its route against a gateway with API keys (a small HTTP server in its place): the key
goes with every look, and a refused one ends the wait at once with what to do, not after minutes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from modelops.tasks import TaskError
from modelops.tasks.rollout import _listed

KEY = "a-gateway-key"


class KeyedModels(BaseHTTPRequestHandler):
    """`GET /v1/models` as a gateway with one API key answers it."""

    def do_GET(self) -> None:
        if self.headers.get("X-API-Key") != KEY:
            status, body = 401, {"error": {"code": "unauthorized", "message": "a valid X-API-Key is required"}}
        else:
            status, body = 200, {"models": [{"task": "tickets", "loaded": {"ready": True}}]}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def models_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), KeyedModels)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/models"
    server.shutdown()


def test_the_key_lists_the_tasks(models_url: str) -> None:
    assert _listed(models_url, {"X-API-Key": KEY}) == [{"task": "tickets", "loaded": {"ready": True}}]


@pytest.mark.parametrize(("headers", "said"), [({}, "no API key was given"), ({"X-API-Key": "x"}, "was refused")])
def test_no_key_or_a_wrong_one_ends_the_wait_saying_how_to_pass_one(
    models_url: str, headers: dict[str, str], said: str
) -> None:
    with pytest.raises(TaskError, match="answered 401") as refused:
        _listed(models_url, headers)
    assert said in str(refused.value)
    assert "--api-key" in str(refused.value)


def test_a_gateway_not_answering_yet_is_looked_at_again() -> None:
    assert _listed("http://127.0.0.1:9/v1/models", {}) is None  # the discard port: nothing listens
