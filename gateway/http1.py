"""A lean HTTP/1.1 keep-alive transport for httpx, for the gateway's one upstream (TorchServe).

Why: httpx's default transport (httpcore over anyio) measured 3 ms of CPU per request at concurrency 1 and
4-8 ms at concurrency 32 on this 2-core machine (its pool walks and polls every idle connection for each
request), which made the gateway the largest CPU user next to the models. This transport keeps httpx as the
client API (requests, responses, timeouts, errors) and does the wire work with asyncio streams: write the
request, read the status line and headers, read a Content-Length or chunked body. About 0.3 ms per request.
Against httpx-aiohttp (httpx over aiohttp's C parser), re-measured with `python -m bench.transport`:
0.275 vs 0.376 ms of CPU per request at concurrency 1, 0.265 vs 0.323 at 32 (docs/performance.md).

Scope: plain HTTP/1.1 to a known server (no TLS, proxies, upgrades or 100-continue); responses are read
whole, which suits TorchServe's small JSON answers.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import httpx

_HEAD_END = b"\r\n\r\n"
# status, headers, body, whether the connection stays open
Answer = tuple[int, list[tuple[bytes, bytes]], bytes, bool]


class Http1Connection:
    """One keep-alive connection: send a request's bytes, read its whole response."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Http1Connection:
        return cls(*await asyncio.open_connection(host, port))

    @property
    def usable(self) -> bool:
        """False once the server has closed it (idle keep-alive timeout) or it was closed here."""
        return not (self.reader.at_eof() or self.writer.is_closing())

    async def send(self, raw: bytes) -> None:
        self.writer.write(raw)
        await self.writer.drain()

    async def receive(self) -> Answer:
        """The next response, read whole."""
        head = await self.reader.readuntil(_HEAD_END)
        status_line, *lines = head[: -len(_HEAD_END)].split(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        headers = [(name.strip(), value.strip()) for name, _, value in (line.partition(b":") for line in lines)]
        fields = {name.lower(): value.lower() for name, value in headers}
        if b"content-length" in fields:
            body = await self.reader.readexactly(int(fields[b"content-length"]))
        elif fields.get(b"transfer-encoding") == b"chunked":
            chunks = []
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
                chunks.append((await self.reader.readexactly(size + 2))[:-2])
            await self.reader.readuntil(b"\r\n")  # no trailers expected: the empty line after the last chunk
            body = b"".join(chunks)
        else:
            body = await self.reader.read()  # delimited by the server closing the connection
            fields[b"connection"] = b"close"
        return status, headers, body, fields.get(b"connection") != b"close"

    def close(self) -> None:
        self.writer.close()


def request_bytes(request: httpx.Request, body: bytes) -> bytes:
    head = [f"{request.method} {request.url.raw_path.decode('ascii')} HTTP/1.1".encode()]
    head += [name + b": " + value for name, value in request.headers.raw]
    return b"\r\n".join(head) + _HEAD_END + body


class Http1Transport(httpx.AsyncBaseTransport):
    """A pool of at most `max_connections` keep-alive connections per host, reused last-in first-out."""

    def __init__(self, max_connections: int) -> None:
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[tuple[str, int], list[Http1Connection]] = defaultdict(list)

    async def _checkout(
        self, origin: tuple[str, int], connect_timeout: float | None, reuse: bool
    ) -> tuple[Http1Connection, bool]:
        """An idle connection that is still open (reused=True), else a new one."""
        idle = self._idle[origin]
        while reuse and idle:
            connection = idle.pop()
            if connection.usable:
                return connection, True
            connection.close()
        try:
            async with asyncio.timeout(connect_timeout):
                return await Http1Connection.open(*origin), False
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {origin[0]}:{origin[1]} timed out") from None
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {origin[0]}:{origin[1]}: {exc}") from None

    async def _exchange(self, connection: Http1Connection, raw: bytes, timeouts: dict[str, float | None]) -> Answer:
        try:
            async with asyncio.timeout(timeouts.get("write")):
                await connection.send(raw)
        except TimeoutError:
            connection.close()
            raise httpx.WriteTimeout("the request could not be sent within the write timeout") from None
        try:
            async with asyncio.timeout(timeouts.get("read")):
                return await connection.receive()
        except TimeoutError:
            connection.close()
            raise httpx.ReadTimeout("no answer within the read timeout") from None
        except (ValueError, IndexError, asyncio.LimitOverrunError) as exc:
            connection.close()
            raise httpx.RemoteProtocolError(f"malformed HTTP response from the upstream: {exc}") from None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        origin = (request.url.host, request.url.port or 80)
        raw = request_bytes(request, await request.aread())
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no free connection to the upstream within the pool timeout") from None
        try:
            for attempt in range(2):
                connection, reused = await self._checkout(origin, timeouts.get("connect"), reuse=attempt == 0)
                try:
                    status, headers, body, keep_alive = await self._exchange(connection, raw, timeouts)
                    break
                except (OSError, asyncio.IncompleteReadError) as exc:
                    connection.close()
                    if not reused or attempt > 0:
                        raise httpx.ReadError(f"connection to the upstream failed: {exc!r}") from None
                    # A kept-alive connection the server closed (idle timeout, restart) fails before any answer:
                    # the request was never processed. Its idle siblings are likely stale too: drop them and
                    # send once more on a new connection.
                    for stale in self._idle.pop(origin, []):
                        stale.close()
            if keep_alive:
                self._idle[origin].append(connection)
            else:
                connection.close()
        finally:
            self._slots.release()
        return httpx.Response(status, headers=headers, content=body, request=request)

    async def aclose(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()
