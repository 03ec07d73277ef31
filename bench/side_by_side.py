"""Two or more gateways in front of the same TorchServe, driven with the same single-text load in alternating
rounds: the comparison this 2-core VM's run-to-run noise (10-15% between runs minutes apart) allows.

`python -m bench.uvicorn_stack` (two HTTP stacks, same code) and `python -m bench.gateway_versions` (two
versions of the gateway code, same stack) are built on it. Each prints req/s, p50 and the gateway process's CPU
milliseconds per request (from /proc), the median of the rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import psutil

from bench.measure import load_on, payloads, sample
from contract.catalog import TaskSpec

Gateways = dict[str, tuple[str, psutil.Process]]
Figures = dict[str, dict[str, dict[str, float]]]


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The options every side-by-side comparison takes."""
    options = argparse.ArgumentParser(prog=prog, description=description)
    options.add_argument("--task", default="disaster", help="a text task (default disaster: the gateway weighs most)")
    options.add_argument("--concurrency", type=int, action="append", help="repeatable; default 1 and 32")
    options.add_argument("--rounds", type=int, default=3, help="alternating rounds per concurrency (median reported)")
    options.add_argument("--duration", type=float, default=10.0)
    options.add_argument("--warmup", type=float, default=2.0)
    options.add_argument("--out", type=Path, help="write the figures as JSON here too")
    return options


def alternate(gateways: Gateways, spec: TaskSpec, args: argparse.Namespace) -> Figures:
    """Round after round, each gateway in turn under the same load; the medians per gateway and concurrency."""
    examples = sample(spec, 64)
    figures: Figures = {}
    with tempfile.TemporaryDirectory(prefix="bench-side-by-side-") as scratch:
        payload_files = {name: Path(scratch) / f"{index}.json" for index, name in enumerate(gateways)}
        for name, (url, _) in gateways.items():
            payload_files[name].write_text(json.dumps(payloads(spec, examples, "gateway", url, "")), encoding="utf-8")
        for concurrency in args.concurrency or [1, 32]:
            rounds: dict[str, list[tuple[float, float, float]]] = {name: [] for name in gateways}
            for _ in range(args.rounds):
                for name, (_, process) in gateways.items():
                    row, cpu_ms = load_on(process, payload_files[name], concurrency, args.duration, args.warmup)
                    if row.errors:
                        raise RuntimeError(f"{name} answered errors: {row.errors}")
                    rounds[name].append((row.rps, row.p50_ms, cpu_ms))
            for name, rows in rounds.items():
                figure = {
                    "rps": round(statistics.median(r[0] for r in rows), 1),
                    "p50_ms": round(statistics.median(r[1] for r in rows), 2),
                    "gateway_cpu_ms_per_request": round(statistics.median(r[2] for r in rows), 3),
                }
                figures.setdefault(name, {})[str(concurrency)] = figure
                cpu = figure["gateway_cpu_ms_per_request"]
                print(
                    f"{spec.task} c={concurrency:<3} {name:<17} {figure['rps']:>7.1f} req/s  "
                    f"p50 {figure['p50_ms']:>6.2f} ms  gateway CPU {cpu:.3f} ms/request",
                    flush=True,
                )
    if args.out:
        args.out.write_text(
            json.dumps({"task": spec.task, "rounds": args.rounds, "gateways": figures}, indent=2) + "\n",
            encoding="utf-8",
        )
    return figures
