"""The text routes over real HTTP: gateway -> TorchServe -> text handler, with models synced from S3."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Stack

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("task", "text"),
    [("sentiment", "What a wonderful film"), ("disaster", "Forest fire near La Ronge Sask. Canada")],
)
def test_single_text_answers_with_label_scores_and_model(
    client: httpx.Client, live_stack: Stack, task: str, text: str
) -> None:
    spec = live_stack.catalog[task]
    response = client.post(spec.route, json={"text": text})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["task"] == task
    assert set(body["scores"]) == set(spec.labels)
    assert body["label"] in spec.labels
    assert body["score"] == max(body["scores"].values())
    assert sum(body["scores"].values()) == pytest.approx(1.0, abs=1e-3)
    built_by = live_stack.published[task]["card"]["recipe"]["name"]
    version = live_stack.published[task]["version"]
    assert body["model"] == {"name": spec.model_name, "version": version, "recipe": built_by}
    assert body["latency_ms"] > 0


def test_batch_returns_one_result_per_text_in_order(client: httpx.Client, live_stack: Stack) -> None:
    texts = ["I loved every minute", "Dull and far too long", "A masterpiece", "Not worth the ticket", "Fine"]
    response = client.post("/v1/sentiment", json={"texts": texts})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == len(texts)
    # Order check: each batch result equals the single-text answer for the same position.
    for text, result in zip(texts, results, strict=True):
        single = client.post("/v1/sentiment", json={"text": text}).json()
        assert result["scores"] == single["scores"]


def test_models_listing_shows_catalog_and_loaded_versions(client: httpx.Client, live_stack: Stack) -> None:
    body = client.get("/v1/models").json()
    assert body["torchserve"] == "reachable"
    by_task = {m["task"]: m for m in body["models"]}
    assert set(by_task) == set(live_stack.catalog)
    for task, spec in live_stack.catalog.items():
        loaded = by_task[task]["loaded"]
        assert loaded["version"] == live_stack.published[task]["version"]
        assert loaded["ready_workers"] >= 1
        assert loaded["batch_size"] == spec.batch_size
        assert loaded["max_batch_delay_ms"] == spec.max_batch_delay_ms
        assert by_task[task]["labels"] == list(spec.labels)
        assert by_task[task]["kind"] == spec.kind


def test_health_readiness_and_docs(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "models": {"sentiment": True, "disaster": True, "pose": True},
        "upstreams": {"local": {"ready": True, "reason": None}},
    }
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/sentiment", "/v1/disaster", "/v1/pose", "/v1/models", "/healthz", "/readyz"} <= set(paths)


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    return error["message"]


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"text": ""}, "text", "at least 1 character"),
        ({"text": "   \n\t"}, "text", "non-whitespace"),
        ({"text": "x" * 20001}, "text", "at most 20000 characters"),
        ({"texts": []}, "texts", "at least 1 item"),
        ({"texts": ["ok"] * 33}, "texts", "at most 32 items"),
        ({"texts": ["ok", ""]}, "texts.1", "at least 1 character"),
        ({"text": "a", "texts": ["b"]}, "body", "exactly one of"),
        ({}, "body", "exactly one of"),
        ({"text": 5}, "text", "valid string"),
        ({"text": "a", "extra": 1}, "extra", "not permitted"),
    ],
)
def test_invalid_text_requests_get_422_naming_the_field(
    client: httpx.Client, body: dict[str, object], field: str, fragment: str
) -> None:
    message = _error(client.post("/v1/sentiment", json=body), 422, "validation_error")
    details = client.post("/v1/sentiment", json=body).json()["error"]["details"]
    assert any(d["field"] == field and fragment in d["message"] for d in details), details
    assert fragment in message


def test_disaster_limit_comes_from_its_catalog_entry(client: httpx.Client) -> None:
    message = _error(client.post("/v1/disaster", json={"text": "y" * 2001}), 422, "validation_error")
    assert "at most 2000 characters" in message


def test_malformed_json_is_422(client: httpx.Client) -> None:
    response = client.post(
        "/v1/sentiment", content=b'{"text": "unterminated', headers={"content-type": "application/json"}
    )
    _error(response, 422, "validation_error")


def test_oversize_body_is_413_before_parsing(client: httpx.Client) -> None:
    huge = b'{"text": "' + b"a" * 1_100_000 + b'"}'
    message = _error(client.post("/v1/sentiment", content=huge), 413, "payload_too_large")
    assert "1048576" in message


def test_oversize_chunked_body_is_413(client: httpx.Client) -> None:
    def chunks():  # no Content-Length: the limit must be counted as the body streams in
        yield b'{"text": "'
        for _ in range(40):
            yield b"a" * 32_768
        yield b'"}'

    _error(client.post("/v1/sentiment", content=chunks()), 413, "payload_too_large")


def test_unknown_route_is_json_404(client: httpx.Client) -> None:
    _error(client.get("/v1/nope"), 404, "not_found")
