"""The gateway's task set against a stand-in for its TorchServe client: tasks appear and disappear with what the
upstreams serve, routes and the OpenAPI document follow without a restart, and a spec that cannot be routed is
refused with its reason. The real thing runs in tests/integration/test_own_tasks.py."""

from __future__ import annotations

import asyncio
import json

from fastapi.testclient import TestClient

from contract.catalog import load_catalog, task_document
from gateway.errors import APIError
from gateway.main import create_app
from gateway.settings import Settings
from gateway.tasks import TaskSet
from gateway.torchserve.descriptions import Described


def spec_json(task: str, labels: list[str], model: str | None = None) -> str:
    document = task_document(load_catalog()["disaster"]) | {"task": task, "labels": labels, "label_values": None}
    text = document["text"] | {"examples": []}
    return json.dumps(document | {"model_name": model or task, "description": f"{task} d", "text": text})


class FakeUpstreams:
    """What `TaskSet.refresh` asks of the TorchServe client: the models served, and each one's description."""

    def __init__(self) -> None:
        self.served_models: dict[str, str] = {}
        self.specs: dict[str, str] = {}
        self.complete = True
        self.described_count = 0

    async def served(self) -> tuple[dict[str, str], bool]:
        return dict(self.served_models), self.complete

    async def described(self, model: str) -> Described:
        self.described_count += 1
        if model not in self.specs:
            raise APIError(503, "model_not_ready", "no worker described it")
        return Described("1", {"model_name": model}, self.specs[model])


def refresh(tasks: TaskSet, upstreams: FakeUpstreams) -> bool:
    return asyncio.run(tasks.refresh(upstreams))  # type: ignore[arg-type]


def test_a_served_task_is_routed_then_dropped_once_no_upstream_serves_it() -> None:
    tasks = TaskSet(load_catalog(), lambda spec: None)
    upstreams = FakeUpstreams()
    upstreams.served_models = {"sentiment": "sentiment-1.mar", "tickets": "tickets-1.mar"}
    upstreams.specs["tickets"] = spec_json("tickets", ["billing", "bug", "other"])
    assert refresh(tasks, upstreams)
    assert list(tasks.tasks) == ["sentiment", "disaster", "pose", "tickets"]
    assert tasks.paths["/v1/tickets/explain"] == "tickets"
    assert not refresh(tasks, upstreams)  # the same archive is not described again
    assert upstreams.described_count == 1
    upstreams.complete, upstreams.served_models = False, {"sentiment": "sentiment-1.mar"}
    assert not refresh(tasks, upstreams)  # an upstream did not answer: it may still serve the task
    upstreams.complete = True
    assert refresh(tasks, upstreams)
    assert "tickets" not in tasks.tasks
    assert "/v1/tickets" not in tasks.paths


def test_a_model_still_loading_is_asked_again_and_a_new_archive_is_described_again() -> None:
    tasks = TaskSet(load_catalog(), lambda spec: None)
    upstreams = FakeUpstreams()
    upstreams.served_models = {"tickets": "tickets-1.mar"}
    assert not refresh(tasks, upstreams)
    upstreams.specs["tickets"] = spec_json("tickets", ["a", "b"])
    assert refresh(tasks, upstreams)
    upstreams.served_models, upstreams.specs["tickets"] = {"tickets": "tickets-2.mar"}, spec_json("tickets", ["a", "c"])
    assert refresh(tasks, upstreams)
    assert tasks.tasks["tickets"].labels == ("a", "c")


def test_specs_that_cannot_be_routed_are_refused_with_the_reason() -> None:
    tasks = TaskSet(load_catalog(), lambda spec: None)
    upstreams = FakeUpstreams()
    upstreams.served_models = {m: f"{m}-1.mar" for m in ("old", "clash", "wrong", "broken")}
    upstreams.specs = {
        "old": "",
        "clash": spec_json("sentiment", ["a", "b"], model="clash"),
        "wrong": spec_json("wrong", ["a", "b"], model="other"),
        "broken": spec_json("status", ["a", "b"], model="broken"),
    }
    refresh(tasks, upstreams)
    assert list(tasks.tasks) == ["sentiment", "disaster", "pose"]
    assert tasks.refused["old"].startswith("its archive carries no task spec")
    assert tasks.refused["clash"] == "task 'sentiment' is already routed to model 'sentiment'"
    assert tasks.refused["wrong"] == "its task spec is for model 'other'"
    assert "task name 'status' is taken by the API or the UI" in tasks.refused["broken"]


def test_the_app_routes_a_discovered_task_and_documents_it_without_a_restart() -> None:
    app = create_app(Settings(upstreams=[{"name": "x", "inference_url": "http://127.0.0.1:9"}]))
    tasks: TaskSet = app.state.tasks
    with TestClient(app) as client:
        assert "/v1/tickets" not in client.get("/openapi.json").json()["paths"]
        assert client.post("/v1/tickets", json={"text": "hello"}).json()["error"]["code"] == "not_found"
        upstreams = FakeUpstreams()
        upstreams.served_models = {"tickets": "tickets-1.mar"}
        upstreams.specs["tickets"] = spec_json("tickets", ["billing", "bug"])
        refresh(tasks, upstreams)
        document = client.get("/openapi.json").json()
        assert document["paths"]["/v1/tickets"]["post"]["operationId"] == "classify_tickets"
        assert "TicketsText" in document["components"]["schemas"]
        refused = client.post("/v1/tickets", json={"text": "x" * 2001})
        assert refused.status_code == 422
        assert "2000" in refused.json()["error"]["message"]
        # routed: with no TorchServe reachable it is the model server that is missing now, not the route
        assert client.post("/v1/tickets", json={"text": "hello"}).json()["error"]["code"] == "upstream_unavailable"
        upstreams.served_models = {}
        refresh(tasks, upstreams)
        assert client.post("/v1/tickets", json={"text": "hello"}).status_code == 404
        assert "/v1/tickets" not in client.get("/openapi.json").json()["paths"]


def test_a_spec_from_a_newer_build_is_routed_and_a_refused_new_archive_keeps_the_old_routes() -> None:
    tasks = TaskSet(load_catalog(), lambda spec: None)
    upstreams = FakeUpstreams()
    newer = json.loads(spec_json("tickets", ["a", "b"]))
    newer["recipes"]["fast"]["a_setting_this_gateway_does_not_know"] = 1
    upstreams.served_models, upstreams.specs["tickets"] = {"tickets": "tickets-1.mar"}, json.dumps(newer)
    assert refresh(tasks, upstreams)
    assert tasks.tasks["tickets"].labels == ("a", "b")
    upstreams.served_models, upstreams.specs["tickets"] = {"tickets": "tickets-2.mar"}, spec_json("status", ["a", "b"])
    assert not refresh(tasks, upstreams)
    assert "tickets" in tasks.tasks
    assert "is taken by the API or the UI" in tasks.refused["tickets"]
