"""The gateway's own request logic without TorchServe: the explanation slots, an archive too old to explain,
and coalesced single predictions."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from gateway.coalesce import Coalescer
from gateway.errors import APIError
from gateway.explain_slots import ExplainSlots
from gateway.metrics import GatewayMetrics
from gateway.observe import REQUEST_ID_HEADER, request_id
from gateway.routers.predict import _forward


def test_a_model_holds_as_many_explanations_as_its_slots_and_refuses_the_next() -> None:
    async def scenario() -> None:
        slots = ExplainSlots(per_model=2, retry_after_s=3, metrics=GatewayMetrics())
        async with slots.hold("m"), slots.hold("m"):
            with pytest.raises(APIError) as refused:
                async with slots.hold("m"):
                    pass
            assert refused.value.status == 429
            assert refused.value.code == "explain_busy"
            assert refused.value.retry_after == 3
            async with slots.hold("other"):  # another model's slots are its own
                pass
        async with slots.hold("m"):  # released: free again
            pass

    asyncio.run(scenario())


class OldArchive:
    """A TorchServe whose handler predates explanations: it answers the explanations API like a prediction."""

    async def predict(self, model: str, content: bytes, *args: Any) -> tuple[dict[str, Any], float]:
        return {"task": model, "label": "x", "model": {"name": model, "version": "20250101.000000"}}, 5.0


def test_an_archive_without_explanations_gets_a_clear_501() -> None:
    slots = ExplainSlots(per_model=1, retry_after_s=5, metrics=GatewayMetrics())
    with pytest.raises(APIError) as refused:
        asyncio.run(_forward(OldArchive(), slots, "m", [b"{}"], "application/json"))  # type: ignore[arg-type]
    assert refused.value.status == 501
    assert refused.value.code == "explain_unsupported"
    assert "20250101.000000" in refused.value.message
    assert slots.running["m"] == 0


class EchoServer:
    """A TorchServe stand-in that labels each text by itself, refuses the text "bad" (like a handler's 400), and
    records each request's body and headers."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], dict[str, str]]] = []

    async def predict(
        self,
        model: str,
        content: bytes,
        content_type: str = "",
        api: str = "",
        headers: dict[str, str] | None = None,
        version: str | None = None,
        items: int = 1,
    ) -> tuple[dict[str, Any], float]:
        body = orjson.loads(content)
        self.calls.append((body, headers or {}))
        await asyncio.sleep(0.005)  # the round trip, during which other callers arrive
        texts = [i["text"] for i in body["instances"]] if "instances" in body else [body["text"]]
        if "bad" in texts:
            raise APIError(422, "invalid_request", "instances[1]: bad" if len(texts) > 1 else "bad")
        answers = [{"label": text.upper()} for text in texts]
        return ({"predictions": answers} if "instances" in body else answers[0]), 1.0


def _coalesced(server: EchoServer, texts: list[str], slots: int) -> list[Any]:
    async def scenario() -> list[Any]:
        coalescer = Coalescer(server, window_s=0.01)  # type: ignore[arg-type]

        async def caller(i: int, text: str) -> Any:
            request_id.set(f"rid-{i}")
            try:
                return (await coalescer.predict("m", text, slots))[0]["label"]
            except APIError as exc:
                return exc.code

        return list(await asyncio.gather(*(caller(i, t) for i, t in enumerate(texts))))

    return asyncio.run(scenario())


def test_coalesced_callers_each_get_their_own_answer_in_shared_requests() -> None:
    server = EchoServer()
    assert _coalesced(server, ["a", "b", "c", "d", "e"], slots=1) == ["A", "B", "C", "D", "E"]
    # the first finds too little in flight and goes at once; the next four arrive while it is out and travel
    # together when the window ends
    assert [len(body.get("instances", [body])) for body, _ in server.calls] == [1, 4]
    assert server.calls[0][1][REQUEST_ID_HEADER] == "rid-0"
    assert server.calls[1][1][REQUEST_ID_HEADER] == "rid-1,rid-2,rid-3,rid-4"


def test_one_refused_text_fails_only_its_caller() -> None:
    server = EchoServer()
    assert _coalesced(server, ["a", "bad", "c", "d"], slots=1) == ["A", "invalid_request", "C", "D"]
    # "a" alone, then the shared request of the other three, then each of those alone
    assert [len(body.get("instances", [body])) for body, _ in server.calls] == [1, 3, 1, 1, 1]


class BrokenServer(EchoServer):
    """Fails shared requests with something other than an API error (a bug, a dropped connection)."""

    async def predict(self, model: str, content: bytes, *args: Any, **kwargs: Any) -> tuple[dict[str, Any], float]:
        if b"instances" in content:
            await asyncio.sleep(0.005)
            raise RuntimeError("upstream client bug")
        return await super().predict(model, content, *args, **kwargs)


def test_an_unexpected_failure_ends_the_wait_of_every_caller_it_was_carrying() -> None:
    async def scenario() -> list[str]:
        coalescer = Coalescer(BrokenServer(), window_s=0.01)  # type: ignore[arg-type]

        async def caller(text: str) -> str:
            try:
                return str((await coalescer.predict("m", text, 1))[0]["label"])
            except RuntimeError as exc:
                return str(exc)

        return list(await asyncio.wait_for(asyncio.gather(*(caller(t) for t in "abcd")), timeout=5))

    assert asyncio.run(scenario()) == ["A"] + ["upstream client bug"] * 3


def test_below_twice_the_upstream_slots_in_flight_every_text_goes_alone() -> None:
    server = EchoServer()
    assert _coalesced(server, ["a", "b", "c"], slots=2) == ["A", "B", "C"]
    assert [len(body.get("instances", [body])) for body, _ in server.calls] == [1, 1, 1]
