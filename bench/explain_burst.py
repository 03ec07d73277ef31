"""`python -m bench.explain_burst`: do explanations starve predictions? Predictions of one model are measured
alone, then again while a burst of clients asks the same model for explanations as fast as they can.

Both loads run in this one process: `--concurrency` prediction clients in a closed loop (`bench.loadgen.run`)
and `--explainers` explanation clients, all sending the same validation review. An explanation client waits
the `Retry-After` of a 429 before asking again, as the API asks clients to (`--ignore-retry-after` makes them
hammer instead: what a misbehaving client does, which per-key rate limits are for). The table shows the
predictions' req/s, p50/p95 and errors in each phase, and how the explanation requests were answered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from typing import Any

import httpx

from bench.loadgen import prepare, run
from contract.catalog import load_catalog
from modelops.train.data import data_dir
from modelops.train.evaluate import read_labelled


def _requests(url: str, text: str) -> list[tuple[str, int, bytes]]:
    spec = {"method": "POST", "url": url, "headers": {"Content-Type": "application/json"}, "json": {"text": text}}
    return [prepare(spec)]


async def _explainers(url: str, text: str, clients: int, duration: float, obey: bool) -> dict[str, Any]:
    """`clients` loops asking for explanations for `duration` seconds; a 429 is retried after its Retry-After
    when `obey`, at once otherwise."""
    statuses: Counter[int] = Counter()
    stop_at = time.perf_counter() + duration

    async def client(http: httpx.AsyncClient) -> None:
        while time.perf_counter() < stop_at:
            response = await http.post(url, json={"text": text})
            statuses[response.status_code] += 1
            if response.status_code == 429 and obey:
                await asyncio.sleep(float(response.headers.get("Retry-After", "1")))

    # no keep-alive: a client sleeping out a Retry-After would otherwise find its connection closed by the server
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_keepalive_connections=0)) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return {"answered": {str(k): v for k, v in sorted(statuses.items())}}


async def _phases(
    base: str, route: str, text: str, concurrency: int, explainers: int, duration: float, obey: bool
) -> dict[str, Any]:
    predict = _requests(f"{base}{route}", text)
    alone = await run(predict, concurrency, duration, warmup=2.0)
    beside, burst = await asyncio.gather(
        run(predict, concurrency, duration, warmup=2.0),
        _explainers(f"{base}{route}/explain", text, explainers, duration + 2.0, obey),
    )
    return {"predictions_alone": alone, "predictions_beside_burst": beside, "explain_burst": burst}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.explain_burst", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="sentiment")
    parser.add_argument("--via", default="http://127.0.0.1:8000", help="gateway base URL")
    parser.add_argument("--concurrency", type=int, default=8, help="prediction clients")
    parser.add_argument("--explainers", type=int, default=8, help="explanation clients in the burst")
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per phase")
    parser.add_argument("--ignore-retry-after", action="store_true", help="explainers retry a 429 at once")
    args = parser.parse_args(argv)
    spec = load_catalog()[args.task]
    if spec.kind != "text":
        parser.error("the burst sends texts: choose a text task")
    text = read_labelled(spec, data_dir(), 1)[0].text
    result = asyncio.run(
        _phases(
            args.via.rstrip("/"),
            spec.route,
            text,
            args.concurrency,
            args.explainers,
            args.duration,
            not args.ignore_retry_after,
        )
    )
    keys = ("rps", "p50_ms", "p95_ms", "errors", "requests", "answered")
    for name, figures in result.items():
        print(json.dumps({"phase": name, **{k: figures[k] for k in keys if k in figures}}))


if __name__ == "__main__":
    main()
