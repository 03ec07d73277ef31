"""`python -m bench.transport`: the gateway's upstream transport against the libraries that could replace it.

The gateway's CPU per request is mostly its HTTP client's, so the choice is measured on that alone: one
process sends the same small JSON POST (a tweet, as the gateway forwards it) through httpx with each transport
to a stub upstream in another process (uvicorn, answering like TorchServe: a small JSON body), and reads its own
CPU time (`time.process_time`) per request, at concurrency 1 and 32. The stub's CPU is not counted. Rounds
alternate the transports so machine noise hits each alike; the table shows the median round.

Transports: `http1` (gateway/http1.py, the hand-written one), `httpcore` (httpx's default) and `aiohttp`
(httpx-aiohttp: httpx's API over aiohttp's C-accelerated HTTP parser).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx

from gateway.http1 import Http1Transport
from modelops.local.config import free_port

ANSWER = b'{"label": "disaster", "score": 0.9731, "scores": {"not_disaster": 0.0269, "disaster": 0.9731}}'
BODY = b'{"text": "Forest fire spreading fast towards the highway, evacuation ordered for three towns #wildfire"}'

# the stub upstream, run by uvicorn in its own process
STUB = f"""
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]}})
    await send({{"type": "http.response.body", "body": {ANSWER!r}}})
"""


def _transports(max_connections: int) -> dict[str, Callable[[], httpx.AsyncBaseTransport]]:
    from httpx_aiohttp import AiohttpTransport

    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return {
        "http1": lambda: Http1Transport(max_connections),
        "httpcore": lambda: httpx.AsyncHTTPTransport(limits=limits),
        "aiohttp": lambda: AiohttpTransport(limits=limits),
    }


@contextmanager
def stub_upstream() -> Iterator[str]:
    port = free_port()
    code = STUB + f"\nimport uvicorn\nuvicorn.run(app, host='127.0.0.1', port={port}, log_level='error')\n"
    proc = subprocess.Popen([sys.executable, "-c", code])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.post(url, content=BODY, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait()


async def _run(make: Callable[[], httpx.AsyncBaseTransport], url: str, requests: int, concurrency: int) -> float:
    """CPU milliseconds of this process per request (after a warm-up on the same client)."""
    headers = {"Content-Type": "application/json"}
    async with httpx.AsyncClient(transport=make(), timeout=30) as client:

        async def worker(count: int) -> None:
            for _ in range(count):
                response = await client.post(f"{url}/predictions/disaster", content=BODY, headers=headers)
                response.raise_for_status()

        await asyncio.gather(*(worker(20) for _ in range(concurrency)))
        started = time.process_time()
        await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
        return 1000 * (time.process_time() - started) / (requests // concurrency * concurrency)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.transport", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=4000, help="requests per transport, concurrency and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", default="1,32")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    results: dict[str, dict[int, list[float]]] = {}
    with stub_upstream() as url:
        for _ in range(args.rounds):
            for level in levels:
                for name, make in _transports(max(levels)).items():
                    cpu_ms = asyncio.run(_run(make, url, args.requests, level))
                    results.setdefault(name, {}).setdefault(level, []).append(cpu_ms)
    print("gateway-side CPU ms per request (median of rounds)")
    print(f"{'transport':<10}" + "".join(f"{'c=' + str(level):>10}" for level in levels))
    for name, by_level in results.items():
        print(f"{name:<10}" + "".join(f"{statistics.median(by_level[level]):>10.3f}" for level in levels))
    print(json.dumps({name: {str(k): v for k, v in by_level.items()} for name, by_level in results.items()}))


if __name__ == "__main__":
    main()
