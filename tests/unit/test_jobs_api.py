"""`/v1/jobs` requests refused before any store or upstream is reached: the status and the field named, in-process
(the job flow itself runs against the real stack in tests/integration/test_jobs.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from gateway.main import create_app
from gateway.settings import Settings, UpstreamSettings

UNREACHABLE = "http://127.0.0.1:9"  # discard port: nothing listens


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    upstreams = [UpstreamSettings(inference_url=UNREACHABLE, management_url=UNREACHABLE)]
    with TestClient(create_app(Settings(upstreams=upstreams))) as started:  # its lifespan sets up the routes' parts
        yield started


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"[null, null]", "body"),
        (b'"a string"', "body"),
        (b"{}", "task"),
        (b'{"task": 3, "input_uri": "s3://b/k.csv"}', "task"),
        (b'{"task": "sentiment", "input_uri": "s3://b/k.csv", "extra": 1}', "extra"),
        (b"{not json", "body"),
    ],
)
def test_a_json_submission_that_is_not_the_schema_gets_a_422_naming_the_field(
    client: TestClient, body: bytes, field: str
) -> None:
    answer = client.post("/v1/jobs", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"][0]["field"] == field


def test_a_form_submission_without_a_task_gets_a_422_naming_it(client: TestClient) -> None:
    answer = client.post("/v1/jobs", files={"file": ("rows.csv", b"text\nfine\n", "text/csv")})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["details"][0]["field"] == "task"


def test_the_documented_submission_names_the_served_tasks_and_offers_json_only_with_an_input_prefix() -> None:
    """A generated client learns which tasks exist and where a JSON job's file may be; the document follows the
    gateway's own settings."""
    upstreams = [UpstreamSettings(inference_url=UNREACHABLE, management_url=UNREACHABLE)]
    for prefix, media in ((None, ["multipart/form-data"]), ("s3://b/in/", ["multipart/form-data", "application/json"])):
        with TestClient(create_app(Settings(upstreams=upstreams, jobs_input_prefix=prefix))) as started:
            body = started.get("/openapi.json").json()["paths"]["/v1/jobs"]["post"]["requestBody"]
        assert list(body["content"]) == media
        tasks = body["content"]["multipart/form-data"]["schema"]["properties"]["task"]["enum"]
        assert {"sentiment", "disaster", "pose"} <= set(tasks)
