"""API keys, rate limits, request ids and metrics of the gateway app, in-process (no upstream needed: every
request here is answered before TorchServe would be called, or gets the 503 for an unreachable one)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.apikeys import KeyStore, digest, parse_key_file
from gateway.main import create_app
from gateway.ratelimit import RateLimiter
from gateway.settings import Settings, UpstreamSettings

UNREACHABLE = "http://127.0.0.1:9"  # discard port: nothing listens


def _client(**settings: object) -> TestClient:
    upstreams = [UpstreamSettings(inference_url=UNREACHABLE, management_url=UNREACHABLE)]
    return TestClient(create_app(Settings(upstreams=upstreams, **settings)))


def test_key_file_stores_digests_and_task_grants(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(
        f"# comment\nalice sha256:{digest('a-key').hex()} sentiment,disaster\nbob sha256:{digest('b').hex()}\n"
    )
    store = KeyStore("", path)
    alice = store.match("a-key")
    assert alice is not None
    assert alice.name == "alice"
    assert alice.allows("sentiment")
    assert not alice.allows("pose")
    bob = store.match("b")
    assert bob is not None
    assert bob.allows("pose")
    assert store.match("a-key ") is None
    assert store.match("") is None


def test_key_file_changes_apply_without_restart_and_a_broken_file_keeps_the_old_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"alice sha256:{digest('one').hex()}\n")
    store = KeyStore("", path)
    assert store.match("one") is not None
    path.write_text(f"alice sha256:{digest('two').hex()}\n")
    os.utime(path, (1, 1))  # a distinct mtime even within the filesystem's timestamp granularity
    assert store.match("one") is None
    assert store.match("two") is not None
    path.write_text("alice not-a-digest\n")
    os.utime(path, (2, 2))
    assert store.match("two") is not None
    path.unlink()
    assert store.enabled
    assert store.match("two") is None


def test_key_file_errors_name_the_line() -> None:
    with pytest.raises(ValueError, match="keys:2: expected"):
        parse_key_file("ok sha256:" + "0" * 64 + "\nbroken\n", "keys")


def test_rate_limiter_allows_a_burst_then_the_rate() -> None:
    limiter = RateLimiter(rate_per_s=2, burst=3)
    assert [limiter.take("a", now=0) for _ in range(3)] == [0, 0, 0]
    assert limiter.take("a", now=0) == pytest.approx(0.5)
    assert limiter.take("b", now=0) == 0  # per caller
    assert limiter.take("a", now=0.5) == 0
    assert limiter.take("a", now=0.5) > 0


def test_no_key_is_401_with_a_challenge_wrong_key_401_ungranted_task_403(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"scoped sha256:{digest('s-key').hex()} sentiment\n")
    with _client(api_keys="ops:o-key", api_keys_file=path) as http:
        assert http.get("/healthz").status_code == 200  # probes need no key
        missing = http.post("/v1/sentiment", json={"text": "hi"})
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "missing_api_key"
        assert missing.headers["WWW-Authenticate"] == 'ApiKey header="X-API-Key"'
        wrong = http.post("/v1/sentiment", json={"text": "hi"}, headers={"X-API-Key": "nope"})
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "invalid_api_key"
        forbidden = http.post("/v1/disaster", json={"text": "hi"}, headers={"X-API-Key": "s-key"})
        assert forbidden.status_code == 403
        assert "'scoped' is not granted the task 'disaster'" in forbidden.json()["error"]["message"]
        # a granted key gets through the guard: the unreachable upstream is the next thing it meets
        granted = http.post("/v1/sentiment", json={"text": "hi"}, headers={"X-API-Key": "s-key"})
        assert granted.status_code == 503
        for path_ in ("/metrics", "/openapi.json", "/docs", "/v1/models"):
            assert http.get(path_).status_code == 401, path_
            assert http.get(path_, headers={"X-API-Key": "o-key"}).status_code == 200, path_


def test_rate_limit_is_per_key_with_retry_after() -> None:
    with _client(api_keys="a:ka,b:kb", rate_limit_per_s=0.5, rate_limit_burst=2) as http:
        codes = [http.get("/openapi.json", headers={"X-API-Key": "ka"}).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        limited = http.get("/openapi.json", headers={"X-API-Key": "ka"})
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "rate_limited"
        assert limited.headers["Retry-After"] == "2"
        assert http.get("/openapi.json", headers={"X-API-Key": "kb"}).status_code == 200


def test_request_id_is_echoed_or_generated() -> None:
    with _client() as http:
        assert http.get("/healthz", headers={"X-Request-ID": "trace-42.a:b"}).headers["X-Request-ID"] == "trace-42.a:b"
        generated = http.get("/healthz").headers["X-Request-ID"]
        assert len(generated) == 32
        injected = http.get("/healthz", headers={"X-Request-ID": "x\tinjected=1"}).headers["X-Request-ID"]
        assert injected != "x\tinjected=1"
        assert len(injected) == 32


def test_metrics_count_requests_by_route_template_upstream_errors_and_refusals() -> None:
    with _client(api_keys="ops:o-key") as http:
        key = {"X-API-Key": "o-key"}
        http.post("/v1/sentiment", json={"text": "hi"}, headers=key)  # 503: TorchServe unreachable
        http.post("/v1/sentiment", json={"text": ""}, headers=key)  # 422
        http.get("/no/such/path", headers=key)
        http.get("/v1/models")  # 401
        text = http.get("/metrics", headers=key).text
    assert 'gateway_requests_total{method="POST",route="/v1/sentiment",status="503"} 1.0' in text
    assert 'gateway_requests_total{method="POST",route="/v1/sentiment",status="422"} 1.0' in text
    assert 'gateway_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert 'gateway_upstream_errors_total{code="upstream_unavailable",model="sentiment"} 1.0' in text
    assert 'gateway_auth_rejections_total{reason="missing_api_key"} 1.0' in text
    assert 'gateway_request_duration_seconds_count{route="/v1/sentiment"} 2.0' in text
    assert "gateway_requests_in_flight 1.0" in text  # the /metrics request itself


JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("kwargs", "status", "fragment"),
    [
        ({"json": {"text": "a\x00b"}}, 422, "control character U+0000 at position 1"),
        (
            {"content": b'{"text": "\\ud800"}', "headers": JSON},
            422,
            "body: Invalid JSON",
        ),
        ({"content": b'{"text": "\xff"}', "headers": JSON}, 422, "invalid unicode"),
        ({"content": b"[" * 10_000, "headers": JSON}, 422, "recursion limit"),
        ({"json": {"text": " " * 1_000_000}}, 422, "at most 20000 characters"),
        ({"json": {"text": " \n\t "}}, 422, "non-whitespace"),
        ({"content": b'{"text": "hi"}', "headers": {"content-type": "text/plain"}}, 415, "application/json"),
        ({"data": {"text": "hi"}}, 415, "application/json"),
        ({"json": ["hi"]}, 422, "body: Input should be an object"),
    ],
)
def test_hostile_text_bodies_get_a_4xx_naming_the_problem(kwargs: dict, status: int, fragment: str) -> None:
    with _client() as http:
        response = http.post("/v1/sentiment", **kwargs)
    assert response.status_code == status
    assert fragment in response.json()["error"]["message"]


def test_too_many_or_too_large_headers_get_431() -> None:
    with _client() as http:
        many = http.get("/v1/models", headers={f"x-h{i}": "v" for i in range(80)})
        assert many.status_code == 431
        assert "the limit is 64" in many.json()["error"]["message"]
        large = http.get("/v1/models", headers={"x-big": "a" * 20_000})
        assert large.status_code == 431
        assert "the limit is 16384 bytes" in large.json()["error"]["message"]
        assert http.get("/healthz", headers={"x-fine": "a" * 1000}).status_code == 200


def test_a_405_names_every_method_the_path_serves_in_allow() -> None:
    """RFC 9110: a 405 carries `Allow`. Paths with one route per method (`/v1/jobs`) list all of them."""
    with _client() as client:
        paths = client.get("/openapi.json").json()["paths"]
        assert len(paths) >= 10
        for path, operations in paths.items():
            concrete = path.replace("{task}", "sentiment").replace("{job_id}", "0123456789abcdef0123")
            response = client.request("PATCH", concrete)
            assert response.status_code == 405, (path, response.text)
            assert response.json()["error"]["code"] == "method_not_allowed"
            allowed = set(response.headers["allow"].split(", "))
            assert {method.upper() for method in operations} <= allowed <= {"GET", "HEAD", "POST", "DELETE"}, path


def test_a_photo_body_with_both_image_and_images_is_refused_as_its_schema_says() -> None:
    photo = ("a.png", b"\x89PNG\r\n\x1a\n", "image/png")
    with _client() as client:
        response = client.post("/v1/pose", files=[("image", photo), ("images", photo)])
    assert response.status_code == 422
    assert response.json()["error"]["message"] == "image, images: send one 'image' field or 'images' fields, not both"


def test_cors_is_off_by_default_and_answers_the_origins_configured() -> None:
    """A browser page of an allowed origin gets its preflight answered (before API keys, which a preflight
    never carries) and may read the answer; any other origin gets no CORS headers."""
    preflight = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}
    with _client() as client:
        assert (
            "access-control-allow-origin" not in client.get("/healthz", headers={"Origin": preflight["Origin"]}).headers
        )
    with _client(cors_origins="https://app.example.com", api_keys="alice:secret") as client:
        answered = client.options(
            "/v1/sentiment", headers={**preflight, "Access-Control-Request-Headers": "content-type,x-api-key"}
        )
        assert answered.status_code == 200
        assert answered.headers["access-control-allow-origin"] == "https://app.example.com"
        assert "x-api-key" in answered.headers["access-control-allow-headers"].lower()
        called = client.get("/healthz", headers={"Origin": preflight["Origin"]})
        assert called.headers["access-control-allow-origin"] == "https://app.example.com"
        assert "x-request-id" in called.headers["access-control-expose-headers"].lower()
        other = client.get("/healthz", headers={"Origin": "https://elsewhere.example"})
        assert "access-control-allow-origin" not in other.headers
