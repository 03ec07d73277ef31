"""`python -m bench.ort_memory MODEL.onnx`: what ONNX Runtime's memory arena and memory patterns cost and buy in
one serving worker: resident memory after mixed-shape traffic, and the time of one batch.

A served model sees inputs of many shapes (texts of every length, batches of every size up to the catalog's).
With the arena (and memory patterns) on, ONNX Runtime keeps the buffers of each shape it has seen; with them
off, buffers go back to malloc after each run. Each setting runs in its own fresh process, rounds alternating,
so the two are measured side by side on the same machine state; the figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

SETTINGS = {"arena on": True, "arena off": False}


def _feeds(session: Any, batch: int, tokens: int) -> dict[str, np.ndarray]:
    """Inputs of one shape for the session: token ids and mask for a text model, pixels for an image model."""
    feeds = {}
    for node in session.get_inputs():
        if node.type == "tensor(float)":
            feeds[node.name] = np.random.default_rng(0).random((batch, *node.shape[1:]), dtype=np.float32)
        else:
            feeds[node.name] = np.ones((batch, tokens), dtype=np.int64)
    return feeds


def measure(model: Path, arena: bool, shapes: int, timed: int) -> dict[str, float]:
    """In this process: RSS after `shapes` runs of mixed shapes, then the median time of a fixed batch."""
    import onnxruntime as ort
    import psutil

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = arena
    options.enable_mem_pattern = arena
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    loaded = psutil.Process().memory_info().rss
    rng = np.random.default_rng(1)
    for _ in range(shapes):
        session.run(None, _feeds(session, int(rng.integers(1, 9)), int(rng.integers(8, 129))))
    mixed = psutil.Process().memory_info().rss
    fixed = _feeds(session, 8, 128)
    times = []
    for _ in range(timed):
        started = time.perf_counter()
        session.run(None, fixed)
        times.append(time.perf_counter() - started)
    return {
        "rss_loaded_mib": round(loaded / 2**20, 1),
        "rss_after_mixed_mib": round(mixed / 2**20, 1),
        "batch_ms": round(1000 * statistics.median(times), 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ort_memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="a model.onnx (unzip it from a .mar)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shapes", type=int, default=200, help="runs of random shapes (batch 1-8, 8-128 tokens)")
    parser.add_argument("--timed", type=int, default=30, help="timed runs of a batch of 8 (x 128 tokens)")
    parser.add_argument("--one", choices=list(SETTINGS), help=argparse.SUPPRESS)  # a child process's setting
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.model, SETTINGS[args.one], args.shapes, args.timed)))
        return
    results: dict[str, list[dict[str, float]]] = {name: [] for name in SETTINGS}
    for _ in range(args.rounds):
        for name in SETTINGS:
            command = [sys.executable, "-m", "bench.ort_memory", str(args.model), "--one", name]
            command += ["--shapes", str(args.shapes), "--timed", str(args.timed)]
            results[name].append(json.loads(subprocess.run(command, capture_output=True, check=True, text=True).stdout))
    for name, rounds in results.items():
        growth = statistics.median(r["rss_after_mixed_mib"] - r["rss_loaded_mib"] for r in rounds)
        batch = statistics.median(r["batch_ms"] for r in rounds)
        print(f"{name}: +{growth:.1f} MiB after {args.shapes} mixed shapes, batch of 8 in {batch:.2f} ms (medians)")
    on, off = (statistics.median(r["batch_ms"] for r in results[name]) for name in SETTINGS)
    print(f"time off / on: {off / on:.3f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
