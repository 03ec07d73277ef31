"""Closed-loop HTTP load generator, run as its own process (`python -m bench.loadgen`).

Why a separate process with one asyncio loop: on 2 cores a load generator inside the server's process (or a
thread per client) would steal the CPU it is measuring. Here `concurrency` coroutines each send a request,
wait for its answer and send the next, for `duration` seconds after a warm-up; the process reports its own
CPU time so the table can say what generating the load cost.

Why not an HTTP client library per request: an async httpx request measured 3 ms of CPU here at concurrency 1
and up to 8 ms at 32, so at 100 req/s it would take 0.3 to 0.8 of a core from the two the server is measured
on. Requests are built once with httpx and sent as raw bytes over keep-alive connections with the gateway's
own lean HTTP/1.1 code (`gateway.http1`): 0.4-0.6 ms per request.

Requests come from a JSON file written from `bench.measure.payloads`: a list of
`{"method", "url", "headers", "json"}` or `{"method", "url", "headers", "content_file"}` or
`{"method", "url", "headers", "file_field", "file"}` (multipart upload), cycled in order.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from gateway.http1 import Http1Connection, request_bytes


def prepare(spec: dict[str, Any]) -> tuple[str, int, bytes]:
    """One payload as (host, port, the raw HTTP/1.1 request bytes), built once with httpx and reused."""
    kwargs: dict[str, Any] = {"headers": spec.get("headers", {})}
    if "json" in spec:
        kwargs["json"] = spec["json"]
    elif "content_file" in spec:
        kwargs["content"] = Path(spec["content_file"]).read_bytes()
    elif "file" in spec:
        path = Path(spec["file"])
        kwargs["files"] = {spec["file_field"]: (path.name, path.read_bytes())}
    request = httpx.Request(spec["method"], spec["url"], **kwargs)
    return request.url.host, request.url.port or 80, request_bytes(request, request.read())


def percentile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, round(q * (len(sorted_ms) - 1)))] if sorted_ms else 0.0


async def run(
    requests: list[tuple[str, int, bytes]],
    concurrency: int,
    duration: float,
    warmup: float,
    upstream_field: str | None = None,
    total: int | None = None,
) -> dict[str, Any]:
    """`upstream_field`: a JSON field of each answer holding the server's own upstream round trip in ms (the
    gateway's `latency_ms`); each request's latency minus it is what the server itself added, paired per
    request, so it does not depend on comparing two separately measured runs.

    `total`: send exactly this many requests (a soak) instead of running for `duration` seconds; then every
    request is measured and `duration_s` is the time they took."""
    cycle = itertools.cycle(requests)
    sent_total = 0
    latencies: list[float] = []
    own: list[float] = []
    errors: dict[str, int] = {}
    started = time.perf_counter()
    measure_from = started + (0 if total else warmup)
    stop_at = float("inf") if total else measure_from + duration

    async def client_loop() -> None:
        nonlocal sent_total
        connection: Http1Connection | None = None
        while (now := time.perf_counter()) < stop_at and (total is None or sent_total < total):
            sent, sent_total = now, sent_total + 1
            try:
                host, port, raw = next(cycle)
                async with asyncio.timeout(120):
                    if connection is None or not connection.usable:
                        connection = await Http1Connection.open(host, port)
                    await connection.send(raw)
                    status, _, body, keep_alive = await connection.receive()
                if not keep_alive:
                    connection.close()
                outcome = None if status < 400 else str(status)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                outcome = type(exc).__name__
                if connection is not None:
                    connection.close()
            done = time.perf_counter()
            if measure_from <= done <= stop_at:  # completions inside the measured window
                if outcome is None:
                    latencies.append((done - sent) * 1000)
                    if upstream_field:
                        own.append((done - sent) * 1000 - float(orjson.loads(body)[upstream_field]))
                else:
                    errors[outcome] = errors.get(outcome, 0) + 1
        if connection is not None:
            connection.close()

    cpu_before = time.process_time()
    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    cpu_seconds = time.process_time() - cpu_before
    if total:
        duration = time.perf_counter() - started
    ordered = sorted(latencies)
    paired = {"own_p50_ms": round(statistics.median(own), 2)} if own else {}
    return {
        **paired,
        "concurrency": concurrency,
        "duration_s": round(duration, 2),
        "requests": len(ordered),
        "sent": sent_total,
        "errors": errors,
        "rps": round(len(ordered) / duration, 2),
        "p50_ms": round(statistics.median(ordered), 2) if ordered else 0.0,
        "p95_ms": round(percentile(ordered, 0.95), 2),
        "p99_ms": round(percentile(ordered, 0.99), 2),
        "loadgen_cpu_s": round(cpu_seconds, 2),
        "loadgen_cpu_ms_per_request": round(1000 * cpu_seconds / max(1, sent_total), 3),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.split("\n\n")[0])
    parser.add_argument("--payloads", required=True, help="JSON file with the requests to cycle through")
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds sent but not measured")
    parser.add_argument("--upstream-field", help="answer field with the server's upstream time in ms (own time)")
    parser.add_argument("--requests", type=int, help="send exactly this many requests instead (no warm-up)")
    args = parser.parse_args(argv)
    requests = [prepare(spec) for spec in json.loads(Path(args.payloads).read_text(encoding="utf-8"))]
    result = asyncio.run(
        run(requests, args.concurrency, args.duration, args.warmup, args.upstream_field, args.requests)
    )
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
