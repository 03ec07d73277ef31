"""Closed-loop HTTP load generator, run as its own process (`python -m bench.loadgen`).

Why a separate process with one asyncio loop: on 2 cores a load generator inside the server's process (or a
thread per client) would steal the CPU it is measuring. Here `concurrency` coroutines each send a request,
wait for its answer and send the next, for `duration` seconds after a warm-up; the process reports its own
CPU time so the table can say what generating the load cost.

Requests come from a JSON file written by `bench.payloads`: a list of
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


def _prepare(spec: dict[str, Any]) -> dict[str, Any]:
    """httpx request keyword arguments for one payload, file contents read once up front."""
    request: dict[str, Any] = {"method": spec["method"], "url": spec["url"], "headers": spec.get("headers", {})}
    if "json" in spec:
        request["json"] = spec["json"]
    elif "content_file" in spec:
        request["content"] = Path(spec["content_file"]).read_bytes()
    elif "file" in spec:
        path = Path(spec["file"])
        request["files"] = {spec["file_field"]: (path.name, path.read_bytes())}
    return request


def percentile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, round(q * (len(sorted_ms) - 1)))] if sorted_ms else 0.0


async def run(requests: list[dict[str, Any]], concurrency: int, duration: float, warmup: float) -> dict[str, Any]:
    cycle = itertools.cycle(requests)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        started = time.perf_counter()
        measure_from = started + warmup
        stop_at = measure_from + duration

        async def client_loop() -> None:
            while (now := time.perf_counter()) < stop_at:
                sent = now
                try:
                    response = await client.request(**next(cycle))
                    outcome = None if response.status_code < 400 else str(response.status_code)
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                done = time.perf_counter()
                if measure_from <= done <= stop_at:  # completions inside the measured window
                    if outcome is None:
                        latencies.append((done - sent) * 1000)
                    else:
                        errors[outcome] = errors.get(outcome, 0) + 1

        cpu_before = time.process_time()
        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        cpu_seconds = time.process_time() - cpu_before
    ordered = sorted(latencies)
    return {
        "concurrency": concurrency,
        "duration_s": duration,
        "requests": len(ordered),
        "errors": errors,
        "rps": round(len(ordered) / duration, 2),
        "p50_ms": round(statistics.median(ordered), 2) if ordered else 0.0,
        "p95_ms": round(percentile(ordered, 0.95), 2),
        "p99_ms": round(percentile(ordered, 0.99), 2),
        "loadgen_cpu_s": round(cpu_seconds, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.split("\n\n")[0])
    parser.add_argument("--payloads", required=True, help="JSON file with the requests to cycle through")
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds sent but not measured")
    args = parser.parse_args(argv)
    requests = [_prepare(spec) for spec in json.loads(Path(args.payloads).read_text(encoding="utf-8"))]
    result = asyncio.run(run(requests, args.concurrency, args.duration, args.warmup))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
