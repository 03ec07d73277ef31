"""`python -m bench`: measure every task's serving paths side by side, in one run, on this machine.

Per task, with realistic inputs (the validation split of `../shared/data`):
1. ceiling: the served archive loaded in this process by its own handler class, one instance per TorchServe
   worker on its own thread, fed batches of the catalog's batch size (and, for an optimised runtime, the same
   for the fp32 torch model it was exported from);
2. TorchServe's inference API directly, and the full path through the gateway, under closed-loop load at
   each concurrency (the load generator is a separate process: `bench.loadgen`);
3. the peer-style baseline (`bench.peer_app`): FastAPI calling a Hugging Face pipeline per request.
It prints one table and writes the figures and ratios as JSON. It uses the running stack (`make run`), or
starts one and stops it afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.processes import cpu_seconds, stack_processes
from contract.catalog import REPO_ROOT, TaskSpec, TextTask, load_catalog
from contract.model_card import read_model_card
from contract.torchserve import bearer, read_keys
from gateway.settings import Settings
from modelops.local import stack
from modelops.serve.sync import applied_default
from modelops.train.data import Example, data_dir, load_split
from modelops.train.evaluate import handler_rows, open_handler

DEFAULT_OUT = REPO_ROOT / "docs" / "bench" / "results.json"
# A batch body as the API's users send it: the gateway's default most texts per request, at a few clients.
BATCH_TEXTS = 32
BATCH_CONCURRENCY = 4


def served_archive(cfg: stack.StackConfig, spec: TaskSpec) -> tuple[Path, str]:
    """The archive the stack serves as this model's default (from the applied manifest), and its version."""
    synced = applied_default(cfg.model_store, spec.model_name)
    if synced is None:
        raise SystemExit(f"{spec.model_name} has no synced archive in {cfg.model_store}")
    return synced


def served_runtime(archive: Path) -> str:
    """The runtime the archive serves (its model card's decision; `torch` for archives older than variants)."""
    return str(read_model_card(archive).get("runtime", {}).get("served", "torch"))


def sample(spec: TaskSpec, count: int) -> list[Example]:
    return load_split(spec, data_dir()).validation[:count]


def payloads(spec: TaskSpec, examples: list[Example], target: str, base_url: str, key: str) -> list[dict[str, Any]]:
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


def batch_payloads(spec: TextTask, examples: list[Example], base_url: str) -> list[dict[str, Any]]:
    """`{"texts": [...]}` bodies of `BATCH_TEXTS` texts each, windows over the examples."""
    texts = [ex.text[: spec.text.max_chars] for ex in examples]
    windows = [(texts * 2)[i : i + BATCH_TEXTS] for i in range(0, len(texts), BATCH_TEXTS)]
    return [{"method": "POST", "url": f"{base_url}{spec.route}", "headers": {}, "json": {"texts": w}} for w in windows]


def load(
    payload_file: Path,
    concurrency: int,
    duration: float,
    warmup: float,
    upstream_field: str | None = None,
    total: int | None = None,
) -> dict[str, Any]:
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
    return json.loads(result.stdout)


def load_on(
    server: psutil.Process, payload_file: Path, concurrency: int, duration: float, warmup: float
) -> tuple[dict[str, Any], float]:
    """`load`, and the CPU milliseconds (user + system, from /proc) one server process spent per request sent."""
    before = sum(server.cpu_times()[:2])
    row = load(payload_file, concurrency, duration, warmup)
    return row, 1000 * (sum(server.cpu_times()[:2]) - before) / max(1, row["sent"])


def ceiling(spec: TaskSpec, archive: Path, examples: list[Example], duration: float, runtime: str) -> dict[str, Any]:
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
    return {
        "items_per_s": round(sum(counts) / seconds, 2),
        "runtime": runtime,
        "batch_size": spec.batch_size,
        "workers": spec.workers,
        "threads": spec.workers * spec.threads_per_worker,
    }


@contextmanager
def uvicorn_app(
    app: str, what: str, env: dict[str, str] | None = None, flags: list[str] | None = None, timeout_s: float = 120
) -> Iterator[tuple[str, psutil.Process]]:
    """A bench-only ASGI app (`module:attribute`) served by uvicorn on a free port until the block ends: its URL
    and process."""
    port = stack.free_port()
    cmd = [sys.executable, "-m", "uvicorn", app, "--port", str(port), "--log-level", "warning", *(flags or [])]
    process = subprocess.Popen(cmd, cwd=REPO_ROOT, env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + timeout_s
        while not stack.port_open("127.0.0.1", port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", psutil.Process(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def peer_server(spec: TaskSpec, archive: Path) -> Iterator[str]:
    """The peer-style baseline app on a free port, serving the same fine-tuned weights."""
    with tempfile.TemporaryDirectory(prefix=f"peer-{spec.task}-") as unpacked:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(unpacked)
        peer = uvicorn_app("bench.peer_app:app", f"the peer baseline for {spec.task}", {"PEER_MODEL_DIR": unpacked})
        with peer as (url, _):
            yield url


@contextmanager
def running_stack(cfg: stack.StackConfig) -> Any:
    """Use the stack `make run` started; if none answers, start one and stop it afterwards."""

    def ready() -> bool:
        try:
            return httpx.get(f"{cfg.gateway_url}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    if ready():
        yield
        return
    print("no ready stack: starting one with `python -m modelops run`", file=sys.stderr)
    process = subprocess.Popen([sys.executable, "-m", "modelops", "run"], cwd=REPO_ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + 3600
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the stack did not become ready; see `make run` output")
            time.sleep(5)
        yield
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=120)


def coalesce_window(gateway: psutil.Process) -> float:
    """The coalescing window a running gateway was started with (its environment, else the settings' default):
    the results name each gateway path by it, so a comparison says which side coalesced."""
    configured = gateway.environ().get("GATEWAY_COALESCE_WINDOW_MS")
    return float(configured or Settings.model_fields["coalesce_window_ms"].default)


@contextmanager
def second_gateway(
    cfg: stack.StackConfig, extra_env: dict[str, str] | None = None, uvicorn_args: list[str] | None = None
) -> Iterator[tuple[str, psutil.Process]]:
    """A second gateway in front of the same TorchServe (`stack.second_gateway`), with its own settings or
    uvicorn flags: its URL and process, whose CPU time the bench reads."""
    with stack.second_gateway(cfg, extra_env, uvicorn_args or ()) as second:
        pid = stack.running_pid(second, "gateway")
        assert pid is not None, "the second gateway did not start"
        yield second.gateway_url, psutil.Process(pid)


def bench_task(
    cfg: stack.StackConfig,
    spec: TaskSpec,
    levels: list[int],
    duration: float,
    warmup: float,
    examples_n: int,
    second_window_ms: float | None = None,
) -> dict[str, Any]:
    archive, version = served_archive(cfg, spec)
    runtime = served_runtime(archive)
    examples = sample(spec, examples_n)
    key = read_keys(cfg.key_file).inference
    processes = stack_processes(cfg, [spec.model_name])
    result: dict[str, Any] = {
        "version": version,
        "runtime": runtime,
        "examples": len(examples),
        "gateway_window_ms": coalesce_window(processes["gateway"]),
    }
    print(f"[{spec.task}] ceiling (in-process, batched, {runtime})", file=sys.stderr)
    result["ceiling"] = ceiling(spec, archive, examples, duration, runtime)
    if runtime != "torch":
        print(f"[{spec.task}] ceiling of the fp32 torch model the variant was exported from", file=sys.stderr)
        result["ceiling_fp32"] = ceiling(spec, archive, examples, duration, "torch")
    targets = {"torchserve": cfg.inference_url, "gateway": cfg.gateway_url}
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        for target, base_url in targets.items():
            result[target] = measure(
                spec, examples, target, base_url, key, Path(scratch), levels, duration, warmup, processes
            )
        if second_window_ms is not None and spec.kind == "text":
            with second_gateway(cfg, {"GATEWAY_COALESCE_WINDOW_MS": f"{second_window_ms:g}"}) as (url, process):
                result["gateway_second"] = measure(
                    spec,
                    examples,
                    "gateway",
                    url,
                    key,
                    Path(scratch),
                    levels,
                    duration,
                    warmup,
                    {**processes, "gateway": process},
                )
            result["second_gateway_window_ms"] = second_window_ms
        with peer_server(spec, archive) as peer_url:
            result["peer"] = measure(spec, examples, "peer", peer_url, key, Path(scratch), levels, duration, warmup)
        if isinstance(spec, TextTask):
            print(f"[{spec.task}] gateway, {BATCH_TEXTS}-text bodies, concurrency {BATCH_CONCURRENCY}", file=sys.stderr)
            batch_file = Path(scratch) / f"{spec.task}-batch.json"
            batch_file.write_text(json.dumps(batch_payloads(spec, examples, cfg.gateway_url)), encoding="utf-8")
            row = counted(processes, partial(load, batch_file, BATCH_CONCURRENCY, duration, warmup))
            result["gateway_batch"] = {
                **row,
                "texts_per_body": BATCH_TEXTS,
                "texts_per_s": round(row["rps"] * BATCH_TEXTS, 1),
            }
    result["ratios"] = ratios(result, levels)
    return result


def measure(
    spec: TaskSpec,
    examples: list[Example],
    target: str,
    base_url: str,
    key: str,
    scratch: Path,
    levels: list[int],
    duration: float,
    warmup: float,
    processes: dict[str, psutil.Process] | None = None,
) -> dict[str, Any]:
    payload_file = scratch / f"{spec.task}-{target}.json"
    payload_file.write_text(json.dumps(payloads(spec, examples, target, base_url, key)), encoding="utf-8")
    out = {}
    for concurrency in levels:
        print(f"[{spec.task}] {target} concurrency {concurrency}", file=sys.stderr)
        # the gateway reports each item's TorchServe round trip (`latency_ms`): its own time is paired per request
        paired = "latency_ms" if target == "gateway" else None
        out[str(concurrency)] = counted(processes, partial(load, payload_file, concurrency, duration, warmup, paired))
    return out


def counted(processes: dict[str, psutil.Process] | None, point: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One load point, with the stack's CPU milliseconds per request sent (warm-up included) when `processes`
    are given: what each process costs a request, read rather than inferred from latencies."""
    before = cpu_seconds(processes) if processes else {}
    row = point()
    if processes:
        after = cpu_seconds(processes)
        row["cpu_ms_per_request"] = {g: round(1000 * (after[g] - before[g]) / max(1, row["sent"]), 2) for g in after}
    return row


def ratios(result: dict[str, Any], levels: list[int]) -> dict[str, float]:
    low, high = str(min(levels)), str(max(levels))
    gateway, peer, direct = result["gateway"], result["peer"], result["torchserve"]
    optimised = {}
    if "ceiling_fp32" in result:
        speedup = result["ceiling"]["items_per_s"] / result["ceiling_fp32"]["items_per_s"]
        optimised = {"optimised_vs_fp32_ceiling": round(speedup, 2)}
    second = {}
    if "gateway_second" in result:
        rps = result["gateway_second"][high]["rps"]
        second = {"second_gateway_vs_ceiling": round(rps / result["ceiling"]["items_per_s"], 3)}
    return {
        **optimised,
        **second,
        "gateway_vs_ceiling": round(gateway[high]["rps"] / result["ceiling"]["items_per_s"], 3),
        "gateway_vs_peer_rps": round(gateway[high]["rps"] / max(peer[high]["rps"], 1e-9), 2),
        "gateway_vs_peer_p95": round(gateway[high]["p95_ms"] / max(peer[high]["p95_ms"], 1e-9), 2),
        # what the gateway adds to a request (its latency minus its own TorchServe round trip, per request)
        "gateway_overhead_p50_ms": gateway[low]["own_p50_ms"],
        # the same from two separate runs (gateway p50 minus TorchServe-direct p50): noisier, shown for comparison
        "gateway_minus_direct_p50_ms": round(gateway[low]["p50_ms"] - direct[low]["p50_ms"], 2),
    }


def _cpu(row: dict[str, Any]) -> str:
    cpu = row.get("cpu_ms_per_request")
    return (
        f"   cpu ms/req: gateway {cpu['gateway']}, frontend {cpu['frontend']}, workers {cpu['workers']}" if cpu else ""
    )


def format_table(results: dict[str, Any]) -> str:
    lines = [
        f"{'task':<10} {'path':<11} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6}"
    ]
    for task, result in results["tasks"].items():
        for name in ("ceiling", "ceiling_fp32"):
            if name in result:
                figure = result[name]
                label = f"{figure['runtime']} in-process, {figure['workers']} handler(s), {figure['threads']} thread(s)"
                lines.append(f"{task:<10} {name:<11} {'-':>4} {figure['items_per_s']:>8.1f}   {label}")
        labels = {"gateway": f"gw-w{result['gateway_window_ms']:g}"}
        if "gateway_second" in result:
            labels["gateway_second"] = f"gw-w{result['second_gateway_window_ms']:g}"
        for target in ("torchserve", "gateway", "gateway_second", "peer"):
            label = labels.get(target, target)
            for concurrency, row in result.get(target, {}).items():
                errors = sum(row["errors"].values())
                lines.append(
                    f"{task:<10} {label:<11} {concurrency:>4} {row['rps']:>8.1f} {row['p50_ms']:>8.1f} "
                    f"{row['p95_ms']:>8.1f} {row['p99_ms']:>8.1f} {errors:>6}{_cpu(row)}"
                )
        if "gateway_batch" in result:
            batch = result["gateway_batch"]
            lines.append(
                f"{task:<10} {'gw-batch':<11} {batch['concurrency']:>4} {batch['rps']:>8.1f} {batch['p50_ms']:>8.1f} "
                f"{batch['p95_ms']:>8.1f} {batch['p99_ms']:>8.1f} {sum(batch['errors'].values()):>6}{_cpu(batch)}   "
                f"{batch['texts_per_body']}-text bodies: {batch['texts_per_s']:.1f} texts/s"
            )
        lines.append(f"{task:<10} ratios      {json.dumps(result['ratios'])}")
    return "\n".join(lines)


def write_results(results: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"results: {out}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", action="append", help="task to measure (default: all)")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated closed-loop client counts")
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per point")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each point")
    parser.add_argument("--examples", type=int, default=64, help="distinct validation inputs cycled through")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="JSON results file")
    parser.add_argument(
        "--coalesce-window-ms",
        type=float,
        help=(
            "also measure text tasks through a second gateway with this GATEWAY_COALESCE_WINDOW_MS (0: off), "
            "beside the stack's gateway (paths gw-w<window>)"
        ),
    )
    args = parser.parse_args(argv)
    catalog = load_catalog()
    levels = [int(c) for c in args.concurrency.split(",")]
    cfg = stack.StackConfig.from_env()
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "settings": {"concurrency": levels, "duration_s": args.duration, "warmup_s": args.warmup},
        "tasks": {},
    }
    with running_stack(cfg):
        for name in args.task or list(catalog):
            results["tasks"][name] = bench_task(
                cfg, catalog[name], levels, args.duration, args.warmup, args.examples, args.coalesce_window_ms
            )
    print(format_table(results))
    write_results(results, Path(args.out))
