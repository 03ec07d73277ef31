"""The gateway's HTTP/1.1 transport against a small real asyncio server: framing (Content-Length, chunked,
close-delimited), keep-alive reuse, a stale pooled connection, timeouts and refused connections, each
surfacing as the httpx exception the gateway maps to 503/504."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest

from gateway.http1 import Http1Transport

Reply = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]  # returns whether to keep the connection


async def _serve(reply: Reply) -> tuple[asyncio.Server, int, list[int]]:
    """A server that reads one request at a time per connection; counts connections accepted."""
    accepted: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                body = await reader.readexactly(length)
                if not await reply(body, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], accepted


async def _echo(body: bytes, writer: asyncio.StreamWriter) -> bool:
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()
    return True


def _run(
    reply: Reply, scenario: Callable[[httpx.AsyncClient, str, list[int]], Awaitable[None]], **timeouts: float
) -> None:
    async def main() -> None:
        server, port, accepted = await _serve(reply)
        timeout = httpx.Timeout(timeouts.get("read", 5.0), connect=1.0)
        async with server, httpx.AsyncClient(transport=Http1Transport(4), timeout=timeout) as client:
            await scenario(client, f"http://127.0.0.1:{port}", accepted)

    asyncio.run(main())


def test_content_length_answers_reuse_one_connection() -> None:
    async def scenario(client: httpx.AsyncClient, url: str, accepted: list[int]) -> None:
        for n in range(3):
            response = await client.post(f"{url}/predictions/m", json={"n": n})
            assert response.status_code == 200
            assert response.json() == {"n": n}
            assert response.headers["content-type"] == "application/json"
        assert len(accepted) == 1

    _run(_echo, scenario)


def test_concurrent_requests_each_get_their_own_answer() -> None:
    async def scenario(client: httpx.AsyncClient, url: str, accepted: list[int]) -> None:
        answers = await asyncio.gather(*(client.post(url, json={"n": n}) for n in range(12)))
        assert [a.json()["n"] for a in answers] == list(range(12))
        assert len(accepted) <= 4  # the pool's limit

    _run(_echo, scenario)


def test_chunked_and_close_delimited_bodies() -> None:
    async def chunked_then_close(body: bytes, writer: asyncio.StreamWriter) -> bool:
        if body == b"chunked":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
            return True
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\n\r\nbusy until closed")
        await writer.drain()
        return False

    async def scenario(client: httpx.AsyncClient, url: str, accepted: list[int]) -> None:
        first = await client.post(url, content=b"chunked")
        assert (first.status_code, first.text) == (200, "hello world")
        second = await client.post(url, content=b"close")
        assert (second.status_code, second.text) == (503, "busy until closed")
        third = await client.post(url, content=b"chunked")  # the closed connection is not reused
        assert third.text == "hello world"
        assert len(accepted) == 2

    _run(chunked_then_close, scenario)


def test_a_pooled_connection_the_server_dropped_is_replaced_without_an_error() -> None:
    async def answer_once(body: bytes, writer: asyncio.StreamWriter) -> bool:
        await _echo(body, writer)
        return False  # keep-alive announced, but the server closes right after (as on an idle timeout)

    async def scenario(client: httpx.AsyncClient, url: str, accepted: list[int]) -> None:
        assert (await client.post(url, content=b"one")).text == "one"
        await asyncio.sleep(0.1)
        assert (await client.post(url, content=b"two")).text == "two"
        assert len(accepted) == 2

    _run(answer_once, scenario)


def test_a_slow_upstream_is_a_read_timeout() -> None:
    async def slow(body: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(1.0)
        return await _echo(body, writer)

    async def scenario(client: httpx.AsyncClient, url: str, accepted: list[int]) -> None:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(url, content=b"x")

    _run(slow, scenario, read=0.2)


def test_a_refused_connection_is_a_connect_error() -> None:
    async def main() -> None:
        server, port, _ = await _serve(_echo)
        server.close()
        await server.wait_closed()
        async with httpx.AsyncClient(transport=Http1Transport(2)) as client:
            with pytest.raises(httpx.ConnectError):
                await client.post(f"http://127.0.0.1:{port}/", content=b"x")

    asyncio.run(main())


def test_a_malformed_answer_is_a_protocol_error() -> None:
    async def garbage(body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"NONSENSE\r\n\r\n")
        return True

    async def scenario(client: httpx.AsyncClient, url: str, accepted: list[int]) -> None:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(url, content=b"x")

    _run(garbage, scenario)
