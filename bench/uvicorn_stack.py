"""`python -m bench.uvicorn_stack`: the gateway under uvicorn's pure-Python HTTP stack (h11 + asyncio) against its
C one (httptools + uvloop), same code, same TorchServe, in one run.

uvicorn uses httptools and uvloop when they are installed and falls back to h11 and asyncio otherwise, so which
one a gateway runs is an install-time choice. This script starts one gateway of each kind in front of the
running stack's TorchServe (`make run`), drives each with the same single-text load in alternating rounds, and
prints req/s, p50 and the gateway process's CPU milliseconds per request (from /proc), the median of the rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from contextlib import ExitStack
from pathlib import Path

from bench.throughput import load, payloads, sample, second_gateway
from contract.catalog import load_catalog
from modelops.local import stack

STACKS = {
    "h11+asyncio": ["--http", "h11", "--loop", "asyncio"],
    "httptools+uvloop": ["--http", "httptools", "--loop", "uvloop"],
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.uvicorn_stack", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="disaster", help="a text task (default disaster: the gateway weighs most)")
    parser.add_argument("--concurrency", type=int, action="append", help="repeatable; default 1 and 32")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per concurrency (median reported)")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--out", type=Path, help="write the figures as JSON here too")
    args = parser.parse_args(argv)
    cfg = stack.StackConfig()
    spec = load_catalog()[args.task]
    examples = sample(spec, 64)
    figures: dict[str, dict[str, dict[str, float]]] = {}
    with ExitStack() as running, tempfile.TemporaryDirectory(prefix="bench-uvicorn-") as scratch:
        gateways = {
            name: running.enter_context(second_gateway(cfg, uvicorn_args=flags)) for name, flags in STACKS.items()
        }
        for concurrency in args.concurrency or [1, 32]:
            rounds: dict[str, list[tuple[float, float, float]]] = {name: [] for name in STACKS}
            for _ in range(args.rounds):
                for name, (url, process) in gateways.items():
                    payload_file = Path(scratch) / f"{name}.json"
                    payload_file.write_text(json.dumps(payloads(spec, examples, "gateway", url, "")), encoding="utf-8")
                    before = sum(process.cpu_times()[:2])
                    row = load(payload_file, concurrency, args.duration, args.warmup)
                    if row["errors"]:
                        raise RuntimeError(f"{name} answered errors: {row['errors']}")
                    cpu_ms = 1000 * (sum(process.cpu_times()[:2]) - before) / max(1, row["sent"])
                    rounds[name].append((row["rps"], row["p50_ms"], cpu_ms))
            for name, rows in rounds.items():
                figures.setdefault(name, {})[str(concurrency)] = {
                    "rps": round(statistics.median(r[0] for r in rows), 1),
                    "p50_ms": round(statistics.median(r[1] for r in rows), 2),
                    "gateway_cpu_ms_per_request": round(statistics.median(r[2] for r in rows), 3),
                }
                figure = figures[name][str(concurrency)]
                cpu = figure["gateway_cpu_ms_per_request"]
                print(
                    f"{spec.task} c={concurrency:<3} {name:<17} {figure['rps']:>7.1f} req/s  "
                    f"p50 {figure['p50_ms']:>6.2f} ms  gateway CPU {cpu:.3f} ms/request",
                    flush=True,
                )
    if args.out:
        args.out.write_text(json.dumps({"task": spec.task, "rounds": args.rounds, "stacks": figures}, indent=2) + "\n")


if __name__ == "__main__":
    main()
