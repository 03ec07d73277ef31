"""Failing dependencies: TorchServe down (503 + Retry-After, recovery without a gateway restart), a slow
upstream (504), and TorchServe key rotation (the gateway re-reads the key file)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelops.local import services, torchserve, web
from tests.conftest import Stack

pytestmark = pytest.mark.integration


def test_torchserve_down_gives_503_then_recovers_without_gateway_restart(
    client: httpx.Client, live_stack: Stack
) -> None:
    gateway_pid = services.running_pid(live_stack.cfg, "gateway")
    assert client.post("/v1/sentiment", json={"text": "fine"}).status_code == 200
    services.stop(live_stack.cfg, "torchserve")
    try:
        response = client.post("/v1/sentiment", json={"text": "fine"})
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        error = response.json()["error"]
        assert error["code"] == "upstream_unavailable"
        assert "TorchServe" in error["message"]
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "not_ready"
        assert "Retry-After" in ready.headers
        listing = client.get("/v1/models").json()
        assert listing["torchserve"] != "reachable"
        assert all(m["loaded"] is None for m in listing["models"])
    finally:
        live_stack.ensure_torchserve()
    assert client.get("/readyz").status_code == 200
    assert client.post("/v1/sentiment", json={"text": "fine"}).status_code == 200
    assert services.running_pid(live_stack.cfg, "gateway") == gateway_pid


def test_key_rotation_needs_no_gateway_restart(client: httpx.Client, live_stack: Stack) -> None:
    mgmt = torchserve.management_client(live_stack.cfg)
    try:
        before = live_stack.cfg.key_file.read_text()
        mgmt.rotate_keys()
        assert live_stack.cfg.key_file.read_text() != before
    finally:
        mgmt.close()
    assert client.post("/v1/disaster", json={"text": "earthquake"}).status_code == 200
    assert client.get("/readyz").status_code == 200


@pytest.fixture
def impatient_gateway(live_stack: Stack, stack_root: Path) -> Iterator[str]:
    """A second gateway whose upstream timeout (1 ms) is shorter than any model call."""
    env = {"GATEWAY_UPSTREAM_TIMEOUT_S": "0.001"}
    with web.second_gateway(live_stack.cfg, env, state_dir=stack_root / "impatient") as cfg:
        yield cfg.gateway_url


def test_slow_upstream_gives_504_and_gateway_stays_responsive(impatient_gateway: str) -> None:
    with httpx.Client(base_url=impatient_gateway, timeout=30) as http:
        started = time.monotonic()
        response = http.post("/v1/sentiment", json={"text": "slow"})
        assert response.status_code == 504
        assert response.json()["error"]["code"] == "upstream_timeout"
        assert time.monotonic() - started < 5
        assert http.get("/healthz").status_code == 200
