"""TorchServe's dynamic batching with the text handler: a bad request inside a batch fails alone."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from contract.torchserve import bearer, read_keys
from tests.conftest import Stack

pytestmark = pytest.mark.integration


async def _burst(url: str, key: str, bodies: list[bytes]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60) as http:
        return await asyncio.gather(
            *(http.post(url, content=b, headers={**bearer(key), "Content-Type": "application/json"}) for b in bodies)
        )


def _batches_with_invalid(log_text: str) -> list[tuple[int, int]]:
    return [
        (int(size), int(bad))
        for size, bad in re.findall(r"batch model=sentiment size=(\d+) invalid=(\d+)", log_text)
        if int(bad) > 0
    ]


def test_bad_request_in_a_batch_gets_400_and_the_others_200(live_stack: Stack) -> None:
    cfg = live_stack.cfg
    url = f"{cfg.inference_url}/predictions/sentiment"
    key = read_keys(cfg.key_file).inference
    good = [f'{{"text": "review number {i} was great"}}'.encode() for i in range(7)]
    bodies = [*good[:3], b'{"text": ""}', *good[3:]]
    log = cfg.log_dir / "torchserve" / "model_log.log"
    for _attempt in range(5):  # the batch window is 20 ms: retry until the burst lands in one batch
        before = log.read_text() if log.exists() else ""
        responses = asyncio.run(_burst(url, key, bodies))
        statuses = [r.status_code for r in responses]
        assert statuses == [200, 200, 200, 400, 200, 200, 200, 200], [r.text for r in responses]
        assert "must not be empty" in responses[3].json()["error"]["message"]
        assert all(r.json()["task"] == "sentiment" for i, r in enumerate(responses) if i != 3)
        new_batches = _batches_with_invalid(log.read_text()[len(before) :])
        if any(size > 1 for size, _ in new_batches):
            return
    pytest.fail("the invalid request never shared a model batch with valid ones in 5 bursts")
