"""`python -m bench.jobs`: what a bulk job costs interactive callers, and what it gets alone, in one run.

Against the running stack (`make run`: its gateway and its job worker), per task:
1. the batch-body path: `{"texts": [...]}` bodies of 32 texts at concurrency 4 (the closed-loop load
   generator of `bench.loadgen`), in texts per second;
2. a job alone: `--rows` rows of the task's validation texts (repeated as needed), submitted through
   `POST /v1/jobs`, timed from submission to success, in rows per second;
3. interactive single-text requests at each `--concurrency`, without a job, then again while a long job runs
   (cancelled afterwards), in requests per second and p95 latency, in alternating rounds. The long job runs
   on the same task, or with `--job-task` on another one: the workers of every task share the machine's cores.
Every ratio is measured in the same run: job/batch-body texts per second, and per concurrency interactive
throughput and p95 with a job over without.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.measure import LoadPoint, load, payloads, sample
from bench.report import as_json
from contract.catalog import TextTask, load_catalog
from modelops.local.config import StackConfig

BODY_TEXTS = 32
# a job that outlasts the measured window, cancelled after it
LONG_JOB_ROWS = 20_000


@dataclass(frozen=True, kw_only=True)
class PointBesideJob(LoadPoint):
    """An interactive load point measured while a job ran, with the rows per second the job made meanwhile."""

    job_rows_per_s: float


def _texts(spec: TextTask, count: int) -> list[str]:
    texts = [ex.text[: spec.text.max_chars] for ex in sample(spec, 10_000)]
    return [texts[i % len(texts)] for i in range(count)]


def _submit(http: httpx.Client, task: str, texts: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows([("text",), *((t,) for t in texts)])
    response = http.post("/v1/jobs", data={"task": task}, files={"file": ("bench.csv", out.getvalue().encode())})
    response.raise_for_status()
    return str(response.json()["id"])


def _wait(http: httpx.Client, job: str, state: str, timeout_s: float = 1800) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        view = http.get(f"/v1/jobs/{job}").json()
        if view["state"] == state or view["state"] in ("failed", "cancelled"):
            return dict(view)
        time.sleep(0.2)
    raise TimeoutError(f"job {job} not {state} after {timeout_s} s")


def job_alone(http: httpx.Client, task: str, texts: list[str]) -> dict[str, Any]:
    """The job's own rate (`rows_per_s`: from its first shard's start to its last checkpoint), and the rate a
    caller sees from submission to success (the worker's poll and the submission included)."""
    started = time.monotonic()
    job = _submit(http, task, texts)
    view = _wait(http, job, "succeeded")
    seconds = time.monotonic() - started
    return {
        "rows": len(texts),
        "rows_per_s": view["rows_per_s"],
        "submitted_to_succeeded_s": round(seconds, 2),
        "submitted_to_succeeded_rows_per_s": round(len(texts) / seconds, 1),
        "state": view["state"],
        "refused": view["rows"]["refused"],
    }


def bench_task(
    http: httpx.Client,
    spec: TextTask,
    cfg: StackConfig,
    rows: int,
    levels: list[int],
    duration: float,
    rounds: int,
    work: Path,
    job_spec: TextTask | None = None,
) -> dict[str, Any]:
    """`job_spec`: the task the long job beside the interactive callers runs on (default: `spec`)."""
    job_spec = job_spec or spec
    texts = _texts(spec, rows)
    bodies = work / f"{spec.task}-bodies.json"
    windows = [texts[i : i + BODY_TEXTS] for i in range(0, len(texts) - BODY_TEXTS + 1, BODY_TEXTS)]
    bodies.write_text(
        json.dumps(
            [
                {"method": "POST", "url": f"{cfg.gateway_url}{spec.route}", "headers": {}, "json": {"texts": w}}
                for w in windows
            ]
        )
    )
    singles = work / f"{spec.task}-singles.json"
    singles.write_text(json.dumps(payloads(spec, sample(spec, 500), "gateway", cfg.gateway_url, "")))
    batches, alone = [], []
    for _ in range(rounds):  # alternating, so both see the same machine
        batches.append(load(bodies, 4, duration, 2))
        alone.append(job_alone(http, spec.task, texts))
    batch_texts_per_s = round(sum(b.rps for b in batches) / rounds * BODY_TEXTS, 1)
    job_rows_per_s = round(sum(a["rows_per_s"] for a in alone) / rounds, 1)
    result: dict[str, Any] = {
        "batch_body_path": {"rounds": batches, "texts_per_s": batch_texts_per_s},
        "job_alone": {"rounds": alone, "rows_per_s": job_rows_per_s},
        "job_over_batch_body": round(job_rows_per_s / batch_texts_per_s, 3),
        "interactive": {},
        "job_task": job_spec.task,
    }
    for level in levels:
        without: list[LoadPoint] = []
        with_job: list[LoadPoint] = []
        for _ in range(rounds):
            without.append(load(singles, level, duration, 2))
            job = _submit(http, job_spec.task, _texts(job_spec, LONG_JOB_ROWS))
            _wait(http, job, "running")
            row = load(singles, level, duration, 2)
            job_rows_per_s = http.get(f"/v1/jobs/{job}").json()["rows_per_s"]
            with_job.append(PointBesideJob(**vars(row), job_rows_per_s=job_rows_per_s))
            http.delete(f"/v1/jobs/{job}")  # cancelled, then removed with what it wrote
            time.sleep(3)  # the worker stops at its next shard
        rps = [sum(r.rps for r in runs) / rounds for runs in (without, with_job)]
        p95 = [sum(r.p95_ms for r in runs) / rounds for runs in (without, with_job)]
        result["interactive"][str(level)] = {
            "without_job": without,
            "with_job": with_job,
            "throughput_ratio": round(rps[1] / rps[0], 3),
            "p95_ratio": round(p95[1] / p95[0], 3),
        }
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.jobs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", action="append", help="text task(s) to measure (default disaster and sentiment)")
    parser.add_argument("--rows", type=int, action="append", help="rows of the job alone, per task (1500, 2000)")
    parser.add_argument("--concurrency", default="4,16", help="interactive clients, comma-separated levels")
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=2, help="alternating without/with rounds per level")
    parser.add_argument("--job-task", help="run the long job beside the interactive callers on this task instead")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    cfg = StackConfig.from_env()
    catalog = load_catalog()
    tasks = args.task or ["disaster", "sentiment"]
    sizes = args.rows or [1500, 2000][: len(tasks)]
    levels = [int(c) for c in args.concurrency.split(",")]
    results: dict[str, Any] = {"concurrency": levels, "duration_s": args.duration, "rounds": args.rounds}
    with tempfile.TemporaryDirectory() as scratch, httpx.Client(base_url=cfg.gateway_url, timeout=60) as http:
        for task, rows in zip(tasks, sizes, strict=True):
            spec = catalog[task]
            assert isinstance(spec, TextTask), "bulk job benches measure text tasks"
            job_spec = catalog[args.job_task] if args.job_task else spec
            assert isinstance(job_spec, TextTask), "bulk job benches measure text tasks"
            measured = bench_task(http, spec, cfg, rows, levels, args.duration, args.rounds, Path(scratch), job_spec)
            results[task] = as_json(measured)
            print(json.dumps({task: {k: v for k, v in results[task].items() if k != "interactive"}}), flush=True)
            for level, row in results[task]["interactive"].items():
                print(
                    f"{task} c={level}, job on {job_spec.task}: interactive throughput x{row['throughput_ratio']}, "
                    f"p95 x{row['p95_ratio']}",
                    flush=True,
                )
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
