"""Hardening on the real stack: a TorchServe worker SIGKILLed under load, a request followed from the gateway
into the model batch that served it, header limits on the real HTTP server, text the models must accept,
and API keys with a rate limit on a real gateway process."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from contract.healthcheck import healthy
from contract.torchserve import read_keys
from gateway.apikeys import digest
from modelops.local import torchserve, web
from tests.conftest import Stack

pytestmark = pytest.mark.integration


def _metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    match = re.search(rf"^{name}{{{re.escape(wanted)}}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _wait_for_workers(live_stack: Stack, model: str, count: int) -> list[int]:
    mgmt = torchserve.management_client(live_stack.cfg)
    try:
        return mgmt.wait_ready(model, workers=count)
    finally:
        mgmt.close()


def test_worker_killed_under_load_costs_no_client_errors(client: httpx.Client, live_stack: Stack) -> None:
    """SIGKILL one of the two sentiment workers while 8 clients keep sending: TorchServe answers the requests
    of the dead worker's batch with "Worker died." (507, or 500 when the exit status is not reaped yet), the
    gateway sends each again once, and no client sees an error. A request the worker was still gathering
    into a batch gets no answer from TorchServe at all; the gateway re-sends it after its upstream timeout,
    which the clients' 60 s timeout outlasts."""
    pids = _wait_for_workers(live_stack, "sentiment", 2)
    retries_before = _metric(client.get("/metrics").text, "gateway_upstream_retries_total", model="sentiment")
    statuses: Counter[int] = Counter()
    refusals: list[str] = []  # what a caller who got an error was told, so a failure says why
    stop = threading.Event()

    def send_loop(n: int) -> None:
        with httpx.Client(base_url=live_stack.gateway, timeout=60) as http:
            while not stop.is_set():
                response = http.post("/v1/sentiment", json={"text": f"film {n} was a joy"})
                statuses[response.status_code] += 1
                if response.status_code != 200:
                    refusals.append(response.text)

    threads = [threading.Thread(target=send_loop, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(2)
    os.kill(pids[0], signal.SIGKILL)
    time.sleep(6)
    stop.set()
    for thread in threads:
        thread.join()
    after = _wait_for_workers(live_stack, "sentiment", 2)
    retries = _metric(client.get("/metrics").text, "gateway_upstream_retries_total", model="sentiment")
    print(f"worker kill: answers {dict(statuses)}, gateway retries {retries - retries_before:g}")
    assert pids[0] not in after  # TorchServe replaced the dead worker
    assert set(statuses) == {200}, (statuses, refusals[:3])
    assert sum(statuses.values()) > 50


def test_a_request_id_is_echoed_logged_and_reaches_the_model_batch(client: httpx.Client, live_stack: Stack) -> None:
    rid = f"it-{uuid.uuid4().hex}"
    response = client.post("/v1/disaster", json={"text": "flood warning downtown"}, headers={"X-Request-ID": rid})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == rid
    model_log = live_stack.cfg.log_dir / "torchserve" / "model_log.log"
    gateway_log = live_stack.cfg.log_dir / "gateway.log"
    deadline = time.monotonic() + 10  # log files are flushed asynchronously
    while time.monotonic() < deadline and not (rid in model_log.read_text() and rid in gateway_log.read_text()):
        time.sleep(0.2)
    batch_line = next(line for line in model_log.read_text().splitlines() if rid in line)
    assert "batch model=disaster" in batch_line
    access_line = next(line for line in gateway_log.read_text().splitlines() if rid in line)
    assert '"path": "/v1/disaster"' in access_line
    assert '"status": 200' in access_line


def test_header_limits_hold_on_the_real_server(client: httpx.Client) -> None:
    many = client.get("/v1/models", headers={f"x-h{i}": "v" for i in range(100)})
    assert many.status_code == 431
    assert many.json()["error"]["code"] == "headers_too_large"
    assert client.get("/v1/models", headers={"x-big": "a" * 40_000}).status_code == 431


@pytest.mark.parametrize(
    "text",
    [
        "مراجعة رائعة لهذا الفيلم، أنصح به بشدة",  # right-to-left
        "שריפה גדולה בצפון \u202ethe fire\u202c",  # bidi override characters
        "🔥🔥 wildfire near the highway 🚒🚒",  # emoji
        "zero\u200bwidth\u200d joiners and e\u0301 combining marks",
        "tabs\tand\nnewlines\r\nare fine",
        "\U0001f600" * 500,  # astral-plane characters only
    ],
)
def test_real_world_unicode_is_classified(client: httpx.Client, text: str) -> None:
    response = client.post("/v1/disaster", json={"text": text})
    assert response.status_code == 200, response.text
    assert response.json()["label"] in ("disaster", "not_disaster")


@pytest.fixture
def keyed_gateway(live_stack: Stack, stack_root: Path) -> Iterator[str]:
    """A second gateway process on the same TorchServe, with API keys (one from env, one from a key file that
    only grants `sentiment`) and a rate limit of one request per 5 s after a burst of 5."""
    key_file = stack_root / "keyed-api-keys"
    key_file.write_text(f"reviews sha256:{digest('reviews-key').hex()} sentiment\n")
    env = {
        "GATEWAY_API_KEYS": "ops:ops-key",
        "GATEWAY_API_KEYS_FILE": str(key_file),
        "GATEWAY_RATE_LIMIT_PER_S": "0.2",
        "GATEWAY_RATE_LIMIT_BURST": "5",
    }
    with web.second_gateway(live_stack.cfg, env, state_dir=stack_root / "keyed") as cfg:
        yield cfg.gateway_url


def test_api_keys_and_rate_limit_on_a_gateway_process(keyed_gateway: str) -> None:
    with httpx.Client(base_url=keyed_gateway, timeout=60) as http:
        assert http.get("/healthz").status_code == 200
        assert http.post("/v1/sentiment", json={"text": "good"}).status_code == 401
        assert http.post("/v1/sentiment", json={"text": "good"}, headers={"X-API-Key": "guess"}).status_code == 401
        reviews = {"X-API-Key": "reviews-key"}
        assert http.post("/v1/sentiment", json={"text": "good"}, headers=reviews).status_code == 200
        assert http.post("/v1/disaster", json={"text": "fire"}, headers=reviews).status_code == 403
        ops = {"X-API-Key": "ops-key"}
        codes = [http.post("/v1/disaster", json={"text": "fire"}, headers=ops).status_code for _ in range(8)]
        assert codes[:5] == [200] * 5
        assert 429 in codes[5:]
        limited = http.get("/v1/models", headers=ops)
        assert limited.status_code == 429
        wait = int(limited.headers["Retry-After"])
        assert 1 <= wait <= 5
        assert http.post("/v1/sentiment", json={"text": "good"}, headers=reviews).status_code == 200  # per key
        time.sleep(wait)  # Retry-After is honest: after it, the key may call again
        assert http.get("/v1/models", headers=ops).status_code == 200


def test_secrets_never_reach_the_logs(client: httpx.Client, live_stack: Stack) -> None:
    """TorchServe's keys and the S3 secret are used on every request and sync, and written nowhere in logs."""
    assert client.post("/v1/sentiment", json={"text": "fine"}).status_code == 200
    keys = read_keys(live_stack.cfg.key_file)
    secrets = {
        "inference key": keys.inference,
        "management key": keys.management,
        "S3 secret": os.environ["AWS_SECRET_ACCESS_KEY"],
    }
    logs = [path for path in live_stack.cfg.log_dir.rglob("*") if path.is_file()]
    assert logs
    for path in logs:
        text = path.read_text(encoding="utf-8", errors="replace")
        for what, secret in secrets.items():
            assert secret not in text, f"{what} found in {path}"


def test_container_health_check_authenticates_against_torchserve(live_stack: Stack) -> None:
    """The compose health check: TorchServe's management API answers it only with the key from the key file."""
    url = f"{live_stack.cfg.management_url}/models"
    assert healthy(url, live_stack.cfg.key_file)
    assert not healthy(url)  # token authorization is on: no key, no answer
    assert healthy(f"{live_stack.gateway}/healthz")
