"""Fewer upstream requests over real HTTP: the texts of one `{"texts": [...]}` request travel to TorchServe in a
few KServe v1 `instances` requests, and so do concurrent single requests on a gateway that coalesces them;
every answer is the one the text gets on its own."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from modelops.local import web
from tests.conftest import Stack

pytestmark = pytest.mark.integration

TWEETS = [
    "Forest fire spreading towards the highway, evacuation ordered",
    "Loving this sunny afternoon at the beach",
    "Earthquake of magnitude 6 hits the coast, buildings collapsed",
    "My phone battery died again, what a disaster lol",
    "Flood waters rising in the valley #flood",
]


@pytest.mark.parametrize("task", ["sentiment", "disaster"])
def test_a_batch_answers_in_order_exactly_as_one_at_a_time(client: httpx.Client, task: str) -> None:
    texts = [*TWEETS, *TWEETS[::-1]]
    batch = client.post(f"/v1/{task}", json={"texts": texts})
    assert batch.status_code == 200, batch.text
    alone = [client.post(f"/v1/{task}", json={"text": t}).json() for t in texts]
    fields = ("task", "label", "score", "scores", "model")
    assert [{k: r[k] for k in fields} for r in batch.json()["results"]] == [{k: r[k] for k in fields} for r in alone]


def test_a_long_review_gets_the_same_answer_whatever_its_batch_mates(client: httpx.Client, live_stack: Stack) -> None:
    """A review far past the 128-token budget is cut to its head and tail on its own: inside one model request
    with short batch-mates or with other long reviews, it gets the answer it gets alone, to the last digit."""
    opening = "The opening act is slow and the dialogue stiff, though the lead tries hard. "
    middle = "The second hour wanders from one subplot to another without much purpose. " * 40
    ending = "But the final twenty minutes are superb, moving and beautifully shot; I loved it."
    review = opening + middle + ending
    alone = client.post("/v1/sentiment", json={"text": review}).json()
    spec = live_stack.catalog["sentiment"]
    n = 3 * spec.workers * spec.batch_size - 1  # with the review, three texts in each model request
    long_mates = [f"Review {i}: a dull, lifeless remake that never finds its feet. " * (20 + i) for i in range(n)]
    for mates in ((TWEETS * n)[:n], long_mates):
        texts = [*mates[:10], review, *mates[10:]]
        batch = client.post("/v1/sentiment", json={"texts": texts})
        assert batch.status_code == 200, batch.text
        answer = batch.json()["results"][10]
        assert (answer["label"], answer["scores"]) == (alone["label"], alone["scores"])


def test_a_batch_body_travels_in_a_few_model_requests_under_its_request_id(
    client: httpx.Client, live_stack: Stack
) -> None:
    """32 texts, and disaster's 2 workers x batch size 4: 8 TorchServe requests of 4 texts, each logged in its
    model batch under the body's request id."""
    spec = live_stack.catalog["disaster"]
    calls = spec.workers * spec.batch_size
    texts = [f"{tweet} ({i})" for i, tweet in enumerate(TWEETS * 7)][:32]
    rid = f"batch-{uuid.uuid4().hex}"
    response = client.post("/v1/disaster", json={"texts": texts}, headers={"X-Request-ID": rid})
    assert response.status_code == 200
    assert len({r["latency_ms"] for r in response.json()["results"]}) <= calls  # one round trip per request
    model_log = live_stack.cfg.log_dir / "torchserve" / "model_log.log"
    deadline = time.monotonic() + 10  # log files are flushed asynchronously
    lines: list[str] = []
    while time.monotonic() < deadline and sum(line.count(rid) for line in lines) < calls:
        time.sleep(0.2)
        lines = [line for line in model_log.read_text().splitlines() if rid in line]
    carried = 0
    for line in lines:
        ids = re.search(r"request_ids=(\S+)", line)
        inputs = re.search(r"inputs=(\d+)", line)
        assert ids is not None
        assert inputs is not None
        mine = ids.group(1).split(",").count(rid)
        carried += mine
        assert int(inputs.group(1)) >= mine * len(texts) // calls
    assert carried == calls


def test_one_bad_text_refuses_the_body_and_names_it(client: httpx.Client) -> None:
    response = client.post("/v1/disaster", json={"texts": ["fine", "x" * 2001, "also fine"]})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "texts.1"


@pytest.fixture
def coalescing_gateway(live_stack: Stack, tmp_path: Path) -> Iterator[str]:
    """A second gateway in front of the same TorchServe, coalescing single predictions within 20 ms."""
    env = {"GATEWAY_COALESCE_WINDOW_MS": "20"}
    with web.second_gateway(live_stack.cfg, env, state_dir=tmp_path) as cfg:
        yield cfg.gateway_url


def test_coalesced_singles_each_get_the_answer_for_their_own_text(
    client: httpx.Client, live_stack: Stack, coalescing_gateway: str
) -> None:
    # 40 callers at once: more than twice disaster's workers x batch size in flight, so groups form
    texts = [f"{tweet} ({i})" for i, tweet in enumerate(TWEETS * 8)]
    ids = [f"co-{uuid.uuid4().hex[:12]}-{i}" for i in range(len(texts))]

    def ask(i: int) -> httpx.Response:
        body = {"text": texts[i]}
        return httpx.post(f"{coalescing_gateway}/v1/disaster", json=body, headers={"X-Request-ID": ids[i]}, timeout=60)

    with ThreadPoolExecutor(len(texts)) as pool:
        answers = list(pool.map(ask, range(len(texts))))
    alone = [client.post("/v1/disaster", json={"text": t}).json() for t in texts]
    assert [a.status_code for a in answers] == [200] * len(texts)
    assert [(a.json()["label"], a.json()["scores"]) for a in answers] == [(b["label"], b["scores"]) for b in alone]
    assert [a.headers["X-Request-ID"] for a in answers] == ids  # each caller keeps its own id
    model_log = live_stack.cfg.log_dir / "torchserve" / "model_log.log"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(rid in model_log.read_text() for rid in ids):
        time.sleep(0.2)
    logged = [line for line in model_log.read_text().splitlines() if any(rid in line for rid in ids)]
    assert all(any(rid in line for line in logged) for rid in ids)  # every caller's id is in a batch log line
    assert any(sum(rid in line for rid in ids) > 1 for line in logged)  # and some travelled together
