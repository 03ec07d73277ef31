"""The gateway's choice of TorchServe upstream, on a fake transport (the real thing, two TorchServes behind
one gateway, is tests/integration/test_upstreams.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from gateway.errors import APIError
from gateway.metrics import GatewayMetrics
from gateway.settings import Settings, UpstreamSettings
from gateway.torchserve.client import PREDICTIONS
from gateway.torchserve.errors import NotReady, Refused, TorchServeFailure
from gateway.torchserve.http import CookielessClient
from gateway.upstream import TorchServeClient

Route = Callable[[httpx.Request], httpx.Response]


def _pool(route: Route, names: tuple[str, ...] = ("a", "b")) -> tuple[TorchServeClient, list[str]]:
    """A client over upstreams at http://<name>:8080 (no key files) answering through `route`; the list
    records which upstream each request went to."""
    seen: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        return route(request)

    upstreams = [UpstreamSettings(name=n, inference_url=f"http://{n}:8080") for n in names]
    return TorchServeClient(Settings(upstreams=upstreams), GatewayMetrics(), httpx.MockTransport(record)), seen


def _ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"label": "positive", "served_by": request.url.host})


def _predict(client: TorchServeClient) -> dict:
    return asyncio.run(client.predict("sentiment", b'{"text": "x"}'))[0]


def test_requests_alternate_over_healthy_upstreams() -> None:
    client, seen = _pool(_ok)
    for _ in range(4):
        _predict(client)
    assert seen == ["a", "b", "a", "b"]


def test_an_unreachable_upstream_is_skipped_at_once_and_tried_last_until_it_answers() -> None:
    down = {"a"}

    def route(request: httpx.Request) -> httpx.Response:
        if request.url.host in down:
            raise httpx.ConnectError("refused", request=request)
        return _ok(request)

    client, seen = _pool(route)
    assert _predict(client)["served_by"] == "b"  # a refused: the same request went on to b
    assert seen == ["a", "b"]
    assert client.upstreams[0].healthy is False
    assert "ConnectError" in (client.upstreams[0].reason or "")
    seen.clear()
    for _ in range(3):
        _predict(client)
    assert seen == ["b", "b", "b"]  # a is marked down: not asked while b answers
    down.clear()
    assert asyncio.run(client.upstreams[0].ping(httpx.Timeout(1.0))) is False  # answered (not a TorchServe body), so up
    assert client.upstreams[0].healthy is True
    seen.clear()
    for _ in range(2):
        _predict(client)
    assert sorted(seen) == ["a", "b"]  # back in the rotation


@pytest.mark.parametrize("status", [507, 500])
def test_a_dying_worker_answer_is_retried_on_the_next_upstream(status: int) -> None:
    """TorchServe says "Worker died." with 507 once it has the killed worker's exit status, with 500 before."""

    def route(request: httpx.Request) -> httpx.Response:
        if request.url.host == "a":
            return httpx.Response(
                status, json={"code": status, "type": "InternalServerException", "message": "Worker died."}
            )
        return _ok(request)

    client, seen = _pool(route)
    assert _predict(client)["served_by"] == "b"
    assert seen == ["a", "b"]


def test_a_prediction_lost_upstream_is_sent_again_after_the_timeout() -> None:
    """TorchServe 0.12 drops the jobs a dying worker was gathering into a batch: no answer ever comes, so the
    timed-out prediction goes to the next upstream; with no retries left the caller gets the 504."""

    def route(request: httpx.Request) -> httpx.Response:
        if request.url.host == "a":
            raise httpx.ReadTimeout("no answer", request=request)
        return _ok(request)

    client, seen = _pool(route)
    assert _predict(client)["served_by"] == "b"
    assert seen == ["a", "b"]
    assert client.upstreams[0].healthy is True  # it was reached: a lost job is no reason to mark it down

    client, seen = _pool(route, names=("a",))
    with pytest.raises(APIError) as info:
        _predict(client)
    assert seen == ["a", "a"]  # the one re-send the default budget allows, then the caller is told
    assert (info.value.status, info.value.code) == (504, "upstream_timeout")


def test_any_other_server_error_is_not_retried_but_named() -> None:
    def route(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"code": 500, "message": "Prediction failed"})

    client, seen = _pool(route)
    with pytest.raises(APIError) as info:
        _predict(client)
    assert seen == ["a"]
    assert (info.value.status, info.value.code) == (502, "upstream_error")
    assert "answered HTTP 500: Prediction failed" in info.value.message


@pytest.mark.parametrize(
    ("status", "failure", "answer"),
    [
        (400, Refused, (422, "invalid_request", "bad text")),
        (413, Refused, (413, "payload_too_large", "bad text")),
        (503, NotReady, (503, "model_not_ready", "model 'sentiment' is not ready in TorchServe a: bad text")),
    ],
)
def test_a_final_refusal_is_the_pools_own_failure_and_becomes_one_api_error(
    status: int, failure: type[TorchServeFailure], answer: tuple[int, str, str]
) -> None:
    """The pool says what TorchServe did in its own terms; what the caller gets is decided in one place."""

    def route(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"code": status, "message": "bad text"})

    client, _ = _pool(route, names=("a",))
    with pytest.raises(failure):
        asyncio.run(client.pool.predict("sentiment", b"{}", "application/json", PREDICTIONS, {}, None))
    with pytest.raises(APIError) as info:
        _predict(client)
    assert (info.value.status, info.value.code, info.value.message) == answer


def test_no_upstream_answering_is_a_503_naming_each_one() -> None:
    def route(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client, _ = _pool(route)
    with pytest.raises(APIError) as info:
        _predict(client)
    assert info.value.status == 503
    assert info.value.code == "upstream_unavailable"
    assert "a: not reachable (ConnectError)" in info.value.message
    assert "b: not reachable (ConnectError)" in info.value.message


def test_upstream_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        Settings(upstreams=[UpstreamSettings(inference_url="http://x:1"), UpstreamSettings(inference_url="http://x:1")])


def test_an_https_upstream_is_refused_at_start_not_sent_in_clear() -> None:
    with pytest.raises(ValueError, match="TLS to TorchServe is not supported"):
        UpstreamSettings(inference_url="https://torchserve.internal:8443")
    with pytest.raises(ValueError, match="is not an http:// URL"):
        UpstreamSettings(inference_url="ftp://torchserve.internal")


def test_a_cookie_an_upstream_sets_never_reaches_the_next_request() -> None:
    """The gateway's one client serves every caller: nothing one answer sets may ride along with another's
    request (and reading answers into a jar cost 8% of the gateway's CPU)."""
    sent_cookies: list[str | None] = []

    def route(request: httpx.Request) -> httpx.Response:
        sent_cookies.append(request.headers.get("cookie"))
        return httpx.Response(200, json={"label": "positive"}, headers={"Set-Cookie": "session=caller-a; Path=/"})

    async def twice() -> None:
        async with CookielessClient(transport=httpx.MockTransport(route)) as http:
            for _ in range(2):
                await http.post("http://a:8080/predictions/sentiment", content=b"{}")
            assert not http.cookies

    asyncio.run(twice())
    assert sent_cookies == [None, None]
    with pytest.raises(ValueError, match="keeps no cookies"):
        CookielessClient(transport=httpx.MockTransport(route)).cookies = {"session": "x"}
