"""`python -m bench.soak`: many mixed requests (all three tasks) through the gateway at high concurrency,
counting every answer by status and sampling the memory of every process of the stack: its resident set (RSS)
and its proportional set (PSS, each shared page split among the processes sharing it). The sum of PSS is the
stack's footprint; a sum of RSS counts the libraries the model workers share once per worker.

Memory is read before anything is sent, after a warm-up (lazy allocations, caches and TorchServe's batch
buffers settle here), after each round of the soak, and with `--settle S` once more S seconds after the last
round, when the gateway's scaler has given back the workers the load added (each built-in keeps one); "flat"
means the rounds added nothing beyond measurement noise. The processes are listed afresh for each reading, so
a worker started under load is counted, one given back drops out, and one TorchServe replaced shows as new.
Several rounds tell a heap still growing to its working size (the JVM's grows in steps
until its collector settles) from a leak, which would keep growing round after round. The load generator is
the benchmark's (`bench.loadgen`), a separate process, so its own memory is not in the figures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.measure import LoadPoint, load, payloads, sample
from bench.processes import memory_mib, stack_processes
from bench.report import write_results
from bench.servers import running_stack
from contract.catalog import REPO_ROOT, load_catalog
from modelops.local import torchserve
from modelops.local.config import StackConfig

DEFAULT_OUT = REPO_ROOT / "docs" / "bench" / "soak.json"


def mixed_payloads(cfg: StackConfig, examples: int) -> list[dict[str, Any]]:
    """Gateway requests of all tasks, interleaved so every stretch of the soak carries all three."""
    per_task = [
        payloads(spec, sample(spec, examples), "gateway", cfg.gateway_url, "") for spec in load_catalog().values()
    ]
    return [p for group in itertools.zip_longest(*per_task) for p in group if p is not None]


def stack_memory(cfg: StackConfig) -> dict[str, dict[str, float | None]]:
    """RSS and PSS of every process of the stack now, the workers of every registered model included."""
    mgmt = torchserve.management_client(cfg)
    try:
        models = mgmt.models()
    finally:
        mgmt.close()
    return memory_mib(stack_processes(cfg, models))


def summary(result: LoadPoint) -> dict[str, Any]:
    by_status: dict[str, int] = {"2xx": result.requests}
    for outcome, count in result.errors.items():
        bucket = f"{outcome[0]}xx" if outcome.isdigit() else outcome
        by_status[bucket] = by_status.get(bucket, 0) + count
    return {
        "answers": by_status,
        "rps": result.rps,
        "p50_ms": result.p50_ms,
        "p95_ms": result.p95_ms,
        "p99_ms": result.p99_ms,
        "duration_s": result.duration_s,
    }


def print_memory(snapshots: dict[str, dict[str, float | None]]) -> None:
    """One row per process, one column per snapshot, and the change from after warm-up to the end."""
    names = list(snapshots)
    print(f"{'process':<26}" + "".join(f"{n:>11}" for n in names) + f"{'start->end':>12}")
    for process in dict.fromkeys(p for snapshot in snapshots.values() for p in snapshot):
        row = [snapshots[n].get(process) for n in names]
        start, end = snapshots["start"].get(process), snapshots[names[-1]].get(process)
        change = f"{100 * (end - start) / start:+.1f}%" if start and end else "-"
        print(f"{process:<26}" + "".join(f"{'-' if v is None else v:>11}" for v in row) + f"{change:>12}")
    totals = [round(sum(v for v in snapshots[n].values() if v is not None), 1) for n in names]
    print(f"{'total':<26}" + "".join(f"{v!s:>11}" for v in totals))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of --requests, memory read after each")
    parser.add_argument("--warmup-requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--examples", type=int, default=64, help="distinct validation inputs per task")
    parser.add_argument("--settle", type=float, default=0, help="seconds to wait for a last reading (0: none)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="JSON results file")
    args = parser.parse_args(argv)
    cfg = StackConfig.from_env()
    rounds = []
    with running_stack(cfg), tempfile.TemporaryDirectory(prefix="soak-") as scratch:
        payload_file = Path(scratch) / "mixed.json"
        payload_file.write_text(json.dumps(mixed_payloads(cfg, args.examples)), encoding="utf-8")
        snapshots = {"before": stack_memory(cfg)}
        print(f"warm-up: {args.warmup_requests} requests", file=sys.stderr)
        warmup = load(payload_file, args.concurrency, 0, 0, total=args.warmup_requests)
        snapshots["start"] = stack_memory(cfg)
        for number in range(1, args.rounds + 1):
            print(f"round {number}: {args.requests} requests at concurrency {args.concurrency}", file=sys.stderr)
            rounds.append(summary(load(payload_file, args.concurrency, 0, 0, total=args.requests)))
            snapshots[f"round {number}"] = stack_memory(cfg)
        if args.settle:
            print(f"settling: {args.settle:.0f} s without requests", file=sys.stderr)
            time.sleep(args.settle)
            snapshots["settled"] = stack_memory(cfg)
    by_measure = {measure: {when: snap[measure] for when, snap in snapshots.items()} for measure in ("rss", "pss")}
    results = {
        "settings": vars(args),
        "warmup": summary(warmup),
        "rounds": rounds,
        "rss_mib": by_measure["rss"],
        "pss_mib": by_measure["pss"],
    }
    for measure, table in by_measure.items():
        print(f"{measure.upper()} (MiB)")
        print_memory(table)
    for number, result in enumerate(rounds, 1):
        print(f"round {number}: {json.dumps(result)}")
    write_results(results, Path(args.out))


if __name__ == "__main__":
    main()
