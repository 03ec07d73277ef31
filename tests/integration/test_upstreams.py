"""Several TorchServes behind one gateway, and the KServe predictor's TorchServe.

The second TorchServe is started the way a KServe predictor pod starts it: from the KServe view in S3
(`kserve/config/config.properties` + `kserve/model-store/`, fetched as KServe's storage initializer does),
with TS_SERVICE_ENVELOPE=kserve in its environment as KServe's controller sets it, only the addresses
rewritten to free loopback ports. The gateway then balances over it and the test stack's own TorchServe.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from modelops.local import services, torchserve, web
from modelops.local.config import StackConfig
from modelops.store.kserve import VIEW, refresh_kserve_view
from tests.conftest import Stack, make_stack_config
from tests.imagegen import encode, photo


def _fetch_view(live: Stack, target: Path) -> Path:
    """What KServe's storage initializer does with `storageUri: s3://<bucket>/<prefix>/kserve`."""
    prefix = live.store.location.key(f"{VIEW}/")
    listing = live.store.s3.list_objects_v2(Bucket=live.store.location.bucket, Prefix=prefix)
    for item in listing["Contents"]:
        local = target / item["Key"][len(prefix) :]
        local.parent.mkdir(parents=True, exist_ok=True)
        live.store.s3.download_file(live.store.location.bucket, item["Key"], str(local))
    return target


def _wait_healthy(cfg: StackConfig) -> None:
    """Until TorchServe's `/ping` (no key: token auth is off) says Healthy, as KServe's readiness probe waits."""
    services.wait_until(
        lambda: httpx.get(f"{cfg.inference_url}/ping", timeout=5).json().get("status") == "Healthy",
        "the predictor's TorchServe",
        300,
        lambda: services.running_pid(cfg, "torchserve") is not None,
    )


@pytest.fixture(scope="module")
def predictor(live_stack: Stack, stack_root: Path, monkeypatch_module: pytest.MonkeyPatch) -> Iterator[StackConfig]:
    """A TorchServe configured exactly by the KServe view (token auth off, models from its snapshot)."""
    refresh_kserve_view(live_stack.store, live_stack.catalog)
    mnt = _fetch_view(live_stack, stack_root / "kserve" / "mnt" / "models")
    cfg = make_stack_config(stack_root / "kserve")
    cfg.model_store = mnt / "model-store"
    monkeypatch_module.setenv("TS_SERVICE_ENVELOPE", "kserve")
    try:
        services.start(cfg, torchserve.service(cfg, template=mnt / "config" / "config.properties"))
        _wait_healthy(cfg)
        yield cfg
    finally:
        services.stop(cfg, "torchserve")


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_predictor_answers_kserve_v1_without_a_key(predictor: StackConfig) -> None:
    assert not predictor.key_file.exists()  # token authorization is off: TorchServe wrote no keys
    texts = {"instances": [{"text": "a wonderful, moving film"}, {"text": "dull and far too long"}]}
    answer = httpx.post(f"{predictor.inference_url}/v1/models/sentiment:predict", json=texts, timeout=60)
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert [p["task"] for p in predictions] == ["sentiment", "sentiment"]
    assert all(p["label"] in ("negative", "positive") for p in predictions)

    image = base64.b64encode(encode(photo(), "JPEG")).decode()
    answer = httpx.post(
        f"{predictor.inference_url}/v1/models/pose:predict", json={"instances": [{"image_base64": image}]}, timeout=60
    )
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"][0]["top_k"]) == 15

    bad = {"instances": [{"text": "fine"}, {"text": ""}]}
    answer = httpx.post(f"{predictor.inference_url}/v1/models/disaster:predict", json=bad, timeout=60)
    assert answer.status_code == 400
    assert "instances[1]" in answer.text


def test_predictor_batches_kserve_requests_without_dropping_any(predictor: StackConfig) -> None:
    """KServe's envelope would answer only the first request of each batch; the handler answers them all."""

    def classify(i: int) -> int:
        body = {"instances": [{"text": f"tweet number {i} about a flood"}] * (1 + i % 3)}
        answer = httpx.post(f"{predictor.inference_url}/v1/models/disaster:predict", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        return len(answer.json()["predictions"])

    with ThreadPoolExecutor(16) as pool:
        counts = list(pool.map(classify, range(48)))
    assert counts == [1 + i % 3 for i in range(48)]
    model_log = (predictor.log_dir / "torchserve" / "model_log.log").read_text()
    sizes = [int(size) for size in re.findall(r"batch model=disaster size=(\d+)", model_log)]
    assert max(sizes) > 1  # requests really were batched together


def _served(metrics_url: str, model: str) -> float:
    """TorchServe's own count of inference requests for `model` (its Prometheus metrics)."""
    text = httpx.get(f"{metrics_url}/metrics", timeout=10).text
    pattern = rf'^ts_inference_requests_total\{{[^}}]*model_name="{model}"[^}}]*\}} ([0-9.e+]+)$'
    return sum(float(v) for v in re.findall(pattern, text, flags=re.M))


def test_gateway_balances_over_two_torchserves_and_rides_out_one(
    live_stack: Stack, predictor: StackConfig, stack_root: Path
) -> None:
    upstreams = [
        web.upstream_entry(live_stack.cfg),
        {"name": "kserve", "inference_url": predictor.inference_url},
    ]
    env = {"GATEWAY_UPSTREAMS": json.dumps(upstreams), "GATEWAY_UPSTREAM_CHECK_INTERVAL_S": "1"}
    metrics = {
        "local": live_stack.cfg.url(live_stack.cfg.metrics_port),
        "kserve": predictor.url(predictor.metrics_port),
    }
    with (
        web.second_gateway(live_stack.cfg, env, state_dir=stack_root / "gateway-two") as cfg,
        httpx.Client(base_url=cfg.gateway_url, timeout=60) as client,
    ):
        ready = client.get("/readyz").json()
        assert ready["status"] == "ready", ready
        both_ready = {"ready": True, "reason": None}
        assert ready["upstreams"] == {"local": both_ready, "kserve": both_ready}

        before = {name: _served(url, "sentiment") for name, url in metrics.items()}
        for i in range(20):
            assert client.post("/v1/sentiment", json={"text": f"review {i}"}).status_code == 200
        served = {name: _served(url, "sentiment") - before[name] for name, url in metrics.items()}
        assert served == {"local": 10, "kserve": 10}  # round-robin, one each in turn

        services.stop(predictor, "torchserve")
        answers = [client.post("/v1/sentiment", json={"text": f"still here {i}"}) for i in range(10)]
        assert [a.status_code for a in answers] == [200] * 10  # the other upstream took every request
        ready = client.get("/readyz").json()
        assert ready["status"] == "ready"
        assert ready["upstreams"]["kserve"]["ready"] is False
        assert "not reachable" in ready["upstreams"]["kserve"]["reason"]
        assert 'gateway_upstream_healthy{upstream="kserve"} 0.0' in client.get("/metrics").text

        services.start(
            predictor, torchserve.service(predictor, template=predictor.torchserve_dir / "config.properties")
        )
        _wait_healthy(predictor)
        services.wait_until(
            lambda: 'gateway_upstream_healthy{upstream="kserve"} 1.0' in client.get("/metrics").text,
            "the gateway noticing the upstream came back",
            10,
            lambda: services.running_pid(cfg, "gateway") is not None,
        )
        before = _served(metrics["kserve"], "sentiment")
        for i in range(10):
            assert client.post("/v1/sentiment", json={"text": f"back again {i}"}).status_code == 200
        assert _served(metrics["kserve"], "sentiment") - before == 5  # back in the rotation, no restart
