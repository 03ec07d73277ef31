"""The gateway's fair share between interactive and bulk calls, with a fake upstream that records what it was
sent and when (the real stack's figures come from `python -m bench.jobs`)."""

from __future__ import annotations

import asyncio
import itertools
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from gateway.fairshare import FairShare
from gateway.main import create_app
from gateway.settings import Settings, UpstreamSettings


class FakeUpstream:
    """Answers each call after `seconds`, recording the chunk sizes and how many calls were in flight."""

    def __init__(self, seconds: float = 0.01) -> None:
        self.seconds = seconds
        self.chunks: list[int] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.calls: list[tuple[float, float]] = []

    async def send(self, items: list[str]) -> list[str]:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        started = time.monotonic()
        await asyncio.sleep(self.seconds)
        self.calls.append((started, time.monotonic()))
        self.in_flight -= 1
        self.chunks.append(len(items))
        return [item.upper() for item in items]


def test_a_quiet_model_takes_bulk_texts_in_chunks_over_its_slots_in_order() -> None:
    async def run() -> tuple[list[str], FakeUpstream]:
        upstream = FakeUpstream()
        texts = [f"t{i}" for i in range(40)]
        answers = await FairShare().bulk_items("m", texts, upstream.send, slots=4, chunk=8)
        return answers, upstream

    answers, upstream = asyncio.run(run())
    assert answers == [f"T{i}" for i in range(40)]
    assert upstream.chunks == [8] * 5
    assert upstream.most_in_flight == 4


# the bulk work's own task, and another task on the same machine: its workers take the same cores
@pytest.mark.parametrize("interactive_task", ["m", "other"])
def test_while_interactive_calls_run_bulk_goes_one_text_at_a_time_and_rests(interactive_task: str) -> None:
    async def run() -> FakeUpstream:
        share, upstream = FairShare(), FakeUpstream(seconds=0.01)

        async def interactive() -> None:
            for _ in range(20):
                async with share.interactive_call(interactive_task):
                    await asyncio.sleep(0.005)

        bulk = asyncio.create_task(share.bulk_items("m", [f"t{i}" for i in range(6)], upstream.send, 4, 8))
        await asyncio.sleep(0)  # the bulk body is admitted first, while the model is still quiet
        await interactive()
        await bulk
        return upstream

    upstream = asyncio.run(run())
    busy = [(start, end) for (start, end), size in zip(upstream.calls, upstream.chunks, strict=True) if size == 1]
    assert busy, upstream.chunks  # some texts went alone while the interactive calls ran
    for (_, end), (next_start, _) in itertools.pairwise(busy):
        assert next_start - end >= 0.009  # rested about as long as the call took


def test_bulk_waits_out_the_quiet_window_then_takes_chunks_again() -> None:
    async def run() -> FakeUpstream:
        share, upstream = FairShare(quiet_s=0.05), FakeUpstream()
        async with share.interactive_call("m"):
            pass
        await asyncio.sleep(0.06)  # the model turned quiet
        await share.bulk_items("m", [f"t{i}" for i in range(16)], upstream.send, 2, 8)
        return upstream

    assert asyncio.run(run()).chunks == [8, 8]


def test_an_interactive_request_pinned_to_a_version_counts_as_interactive() -> None:
    """`X-Model-Version` says which version answers, not whose turn it is: bulk work yields to such a caller as
    to any interactive one. Each upstream call records whether the fair share counted an interactive request
    of the model in flight at that moment."""
    seen: list[tuple[str, int]] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        if request.url.path != "/ping":  # the gateway's health checks are no prediction
            seen.append((request.url.path, app.state.fair_share.interactive["sentiment"]))
        return httpx.Response(200, json={"task": "sentiment", "label": "positive", "score": 0.9})

    settings = Settings(upstreams=[UpstreamSettings(inference_url="http://a:8080")], coalesce_window_ms=0)
    app = create_app(settings, upstream_transport=httpx.MockTransport(upstream))
    with TestClient(app) as client:
        body = {"text": "A fine film"}
        for headers in ({"X-Model-Version": "20260101.000000"}, {}, {"X-Priority": "bulk"}):
            assert client.post("/v1/sentiment", json=body, headers=headers).status_code == 200
    assert seen == [
        ("/predictions/sentiment/20260101.000000", 1),
        ("/predictions/sentiment", 1),
        ("/predictions/sentiment", 0),
    ]
