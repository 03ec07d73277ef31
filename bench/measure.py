"""Measuring a served model: its inputs, the closed-loop load points that drive a server with them, and the
in-process ceiling those points are compared with.

The library the bench programs stand on (`python -m bench`, `bench.jobs`, `bench.soak`, the side-by-side
comparisons): what one measurement needs is a `LoadPlan`, and what a load point gives is a `LoadPoint`, so a
program reads named fields rather than keys it has to know the load generator writes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import psutil

from bench.processes import cpu_seconds
from contract.catalog import REPO_ROOT, TaskSpec
from contract.torchserve import bearer
from modelops.train.data import Example, data_dir, load_split
from modelops.train.evaluate import handler_rows, open_handler


@dataclass(frozen=True)
class LoadSettings:
    """How hard and how long every load point of a run drives its server: the same for every path, so the paths
    compare. A run's results carry it as their `settings`, under these names."""

    concurrency: tuple[int, ...]
    duration_s: float
    warmup_s: float


@dataclass(frozen=True)
class LoadPlan:
    """What measuring one task's paths needs: its inputs, the inference key TorchServe's own API asks for, a
    folder for the payload files the load generator reads, and the run's settings."""

    spec: TaskSpec
    examples: Sequence[Example]
    key: str
    scratch: Path
    settings: LoadSettings


@dataclass(frozen=True)
class CpuPerRequest:
    """CPU milliseconds (user + system) each part of the stack spent per request sent, warm-up included."""

    gateway: float
    frontend: float
    workers: float


@dataclass(frozen=True, kw_only=True)
class LoadPoint:
    """One closed-loop load point, as `bench.loadgen` reports it (its JSON keys are these fields' names).

    `own_p50_ms`: what the server itself added to a request (only when its answers carry their upstream time);
    `cpu_ms_per_request`: what each process of the stack spent (only when the stack's processes were counted).
    The one first and the other last: the key order of the results already written (docs/bench/*.json)."""

    own_p50_ms: float | None = None
    concurrency: int
    duration_s: float
    requests: int
    sent: int
    errors: dict[str, int]
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    loadgen_cpu_s: float
    loadgen_cpu_ms_per_request: float
    cpu_ms_per_request: CpuPerRequest | None = None


@dataclass(frozen=True)
class Ceiling:
    """In-process batched throughput of a served archive, with the layout it ran in (TorchServe's)."""

    items_per_s: float
    runtime: str
    batch_size: int
    workers: int
    threads: int


# A path's load points by concurrency.
Curve = dict[int, LoadPoint]


def sample(spec: TaskSpec, count: int) -> list[Example]:
    return load_split(spec, data_dir()).validation[:count]


def payloads(spec: TaskSpec, examples: Sequence[Example], target: str, base_url: str, key: str) -> list[dict[str, Any]]:
    """One request per example, in the shape each target expects: the gateway takes JSON text or a multipart
    photo; TorchServe (with its inference token) and the peer app take JSON text or the raw photo bytes."""
    image = spec.kind == "image"
    path = {
        "gateway": spec.route,
        "torchserve": f"/predictions/{spec.model_name}",
        "peer": "/predict-image" if image else "/predict",
    }[target]
    common = {"method": "POST", "url": f"{base_url}{path}", "headers": bearer(key) if target == "torchserve" else {}}
    if spec.kind == "text":
        return [{**common, "json": {"text": ex.text[: spec.text.max_chars]}} for ex in examples]
    if target == "gateway":
        return [{**common, "file_field": "image", "file": ex.text} for ex in examples]
    return [{**common, "content_file": ex.text} for ex in examples]


def load(
    payload_file: Path,
    concurrency: int,
    duration: float,
    warmup: float,
    upstream_field: str | None = None,
    total: int | None = None,
) -> LoadPoint:
    """One load point from the load generator, run as its own process so it does not take the measured CPU."""
    paired = ["--upstream-field", upstream_field] if upstream_field else []
    counted = ["--requests", str(total)] if total else []
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.loadgen",
            "--payloads",
            str(payload_file),
            "--concurrency",
            str(concurrency),
            "--duration",
            str(duration),
            "--warmup",
            str(warmup),
            *paired,
            *counted,
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return LoadPoint(**json.loads(result.stdout))


def load_on(
    server: psutil.Process, payload_file: Path, concurrency: int, duration: float, warmup: float
) -> tuple[LoadPoint, float]:
    """`load`, and the CPU milliseconds (user + system, from /proc) one server process spent per request sent."""
    before = sum(server.cpu_times()[:2])
    row = load(payload_file, concurrency, duration, warmup)
    return row, 1000 * (sum(server.cpu_times()[:2]) - before) / max(1, row.sent)


def counted(processes: dict[str, psutil.Process] | None, point: Callable[[], LoadPoint]) -> LoadPoint:
    """One load point, with the stack's CPU milliseconds per request sent (warm-up included) when `processes`
    are given: what each process costs a request, read rather than inferred from latencies."""
    before = cpu_seconds(processes) if processes else {}
    row = point()
    if not processes:
        return row
    after = cpu_seconds(processes)
    cpu = {group: round(1000 * (after[group] - before[group]) / max(1, row.sent), 2) for group in after}
    return replace(row, cpu_ms_per_request=CpuPerRequest(**cpu))


def measure(plan: LoadPlan, target: str, base_url: str, processes: dict[str, psutil.Process] | None = None) -> Curve:
    """`target`'s load points at each of the plan's concurrencies (see `payloads` for the targets), with the
    stack's CPU per request when its `processes` are given."""
    spec, settings = plan.spec, plan.settings
    payload_file = plan.scratch / f"{spec.task}-{target}.json"
    payload_file.write_text(json.dumps(payloads(spec, plan.examples, target, base_url, plan.key)), encoding="utf-8")
    # the gateway reports each item's TorchServe round trip (`latency_ms`): its own time is paired per request
    paired = "latency_ms" if target == "gateway" else None
    out = {}
    for concurrency in settings.concurrency:
        print(f"[{spec.task}] {target} concurrency {concurrency}", file=sys.stderr)
        point = partial(load, payload_file, concurrency, settings.duration_s, settings.warmup_s, paired)
        out[concurrency] = counted(processes, point)
    return out


def ceiling(spec: TaskSpec, archive: Path, examples: list[Example], duration: float, runtime: str) -> Ceiling:
    """In-process batched throughput of the served archive through its own handler (parse + infer).

    The same parallel layout and thread count as TorchServe, without the server: one handler per worker,
    each on its own Python thread with the worker's intra-op threads (torch and ONNX Runtime release the
    GIL while they compute), fed batches of the catalog's batch size. What the model can do on these cores.
    """
    rows = handler_rows(spec, examples)
    batches = [rows[i : i + spec.batch_size] for i in range(0, len(rows), spec.batch_size)]
    with ExitStack() as opened:
        overrides = {"runtime": runtime}
        handlers = [opened.enter_context(open_handler(spec, archive, overrides)) for _ in range(spec.workers)]
        for handler in handlers:
            handler.infer(handler.preprocess(batches[0])[0])  # warm-up
        counts = [0] * len(handlers)
        started = time.perf_counter()

        def drive(slot: int) -> None:
            handler, index = handlers[slot], slot
            while time.perf_counter() - started < duration:
                batch = batches[index % len(batches)]
                handler.infer(handler.preprocess(batch)[0])
                counts[slot], index = counts[slot] + len(batch), index + 1

        threads = [threading.Thread(target=drive, args=(slot,)) for slot in range(len(handlers))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
    return Ceiling(
        items_per_s=round(sum(counts) / seconds, 2),
        runtime=runtime,
        batch_size=spec.batch_size,
        workers=spec.workers,
        threads=spec.workers * spec.threads_per_worker,
    )
