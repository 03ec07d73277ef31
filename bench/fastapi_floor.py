"""`python -m bench.fastapi_floor`: the CPU a FastAPI service spends per request when it does nothing else.

The app below validates a tweet body with Pydantic and answers a fixed prediction: no upstream call, no
middleware, no metrics or logs, on uvicorn's C stack (httptools + uvloop) like the gateway. Driven by the
bench's own load generator with disaster payloads, it prints req/s and the server process's CPU milliseconds
per request (from /proc). Next to `python -m bench.transport` (the upstream call) and the gateway's figure in
`python -m bench`, it says how much of the gateway's CPU per request any FastAPI gateway would pay
(docs/performance.md uses it to show what the two cores leave for the gateway at 0.9x the ceiling).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from fastapi import FastAPI
from pydantic import BaseModel, Field

from bench.measure import load_on, payloads, sample
from bench.servers import uvicorn_app
from contract.catalog import load_catalog

app = FastAPI()


class Tweet(BaseModel):
    text: str = Field(min_length=1, max_length=2000)


@app.post("/v1/disaster")
async def classify(body: Tweet) -> dict[str, object]:
    return {"task": "disaster", "label": "disaster", "score": 0.9, "scores": {"not_disaster": 0.1, "disaster": 0.9}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fastapi_floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, action="append", help="repeatable; default 1 and 32")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    args = parser.parse_args(argv)
    flags = ["--http", "httptools", "--loop", "uvloop", "--no-access-log"]
    with uvicorn_app("bench.fastapi_floor:app", "the FastAPI floor app", flags=flags, timeout_s=60) as (url, server):
        spec = load_catalog()["disaster"]
        with tempfile.TemporaryDirectory(prefix="bench-floor-") as scratch:
            payload_file = Path(scratch) / "payloads.json"
            payload_file.write_text(json.dumps(payloads(spec, sample(spec, 64), "gateway", url, "")), encoding="utf-8")
            for concurrency in args.concurrency or [1, 32]:
                row, cpu_ms = load_on(server, payload_file, concurrency, args.duration, args.warmup)
                print(
                    f"FastAPI floor c={concurrency:<3} {row.rps:>8.1f} req/s  server CPU {cpu_ms:.3f} ms/request  "
                    f"errors {row.errors or 0}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
