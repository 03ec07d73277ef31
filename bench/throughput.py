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

This module is the program: its options and the order of its measurements. What it measures with is
`bench.measure` and `bench.servers`; what it prints and writes is `bench.report`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

from bench.measure import LoadPlan, LoadSettings, ceiling, counted, load, measure, sample
from bench.processes import stack_processes
from bench.report import BatchPoint, Machine, Results, TaskResult, format_table, write_results
from bench.servers import coalesce_window, peer_server, running_stack, second_gateway
from contract.catalog import REPO_ROOT, TaskSpec, TextTask, load_catalog
from contract.model_card import read_model_card
from contract.torchserve import read_keys
from modelops.local.config import StackConfig
from modelops.serve.sync import applied_default
from modelops.train.data import Example

DEFAULT_OUT = REPO_ROOT / "docs" / "bench" / "results.json"
# A batch body as the API's users send it: the gateway's default most texts per request, at a few clients.
BATCH_TEXTS = 32
BATCH_CONCURRENCY = 4


def served_archive(cfg: StackConfig, spec: TaskSpec) -> tuple[Path, str]:
    """The archive the stack serves as this model's default (from the applied manifest), and its version."""
    synced = applied_default(cfg.model_store, spec.model_name)
    if synced is None:
        raise SystemExit(f"{spec.model_name} has no synced archive in {cfg.model_store}")
    return synced


def served_runtime(archive: Path) -> str:
    """The runtime the archive serves (its model card's decision; `torch` for archives older than variants)."""
    return str(read_model_card(archive).get("runtime", {}).get("served", "torch"))


def batch_payloads(spec: TextTask, examples: list[Example], base_url: str) -> list[dict[str, Any]]:
    """`{"texts": [...]}` bodies of `BATCH_TEXTS` texts each, windows over the examples."""
    texts = [ex.text[: spec.text.max_chars] for ex in examples]
    windows = [(texts * 2)[i : i + BATCH_TEXTS] for i in range(0, len(texts), BATCH_TEXTS)]
    return [{"method": "POST", "url": f"{base_url}{spec.route}", "headers": {}, "json": {"texts": w}} for w in windows]


def bench_task(
    cfg: StackConfig,
    spec: TaskSpec,
    settings: LoadSettings,
    examples_n: int,
    second_window_ms: float | None = None,
) -> TaskResult:
    archive, version = served_archive(cfg, spec)
    runtime = served_runtime(archive)
    examples = sample(spec, examples_n)
    key = read_keys(cfg.key_file).inference
    processes = stack_processes(cfg, [spec.model_name])
    window_ms = coalesce_window(processes["gateway"])
    print(f"[{spec.task}] ceiling (in-process, batched, {runtime})", file=sys.stderr)
    top = ceiling(spec, archive, examples, settings.duration_s, runtime)
    fp32 = None
    if runtime != "torch":
        print(f"[{spec.task}] ceiling of the fp32 torch model the variant was exported from", file=sys.stderr)
        fp32 = ceiling(spec, archive, examples, settings.duration_s, "torch")
    second = second_ms = batch = None
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        plan = LoadPlan(spec, examples, key, Path(scratch), settings)
        direct = measure(plan, "torchserve", cfg.inference_url, processes)
        gateway = measure(plan, "gateway", cfg.gateway_url, processes)
        if second_window_ms is not None and spec.kind == "text":
            with second_gateway(cfg, {"GATEWAY_COALESCE_WINDOW_MS": f"{second_window_ms:g}"}) as (url, process):
                second = measure(plan, "gateway", url, {**processes, "gateway": process})
            second_ms = second_window_ms
        with peer_server(spec, archive) as peer_url:
            peer = measure(plan, "peer", peer_url)
        if isinstance(spec, TextTask):
            print(f"[{spec.task}] gateway, {BATCH_TEXTS}-text bodies, concurrency {BATCH_CONCURRENCY}", file=sys.stderr)
            batch_file = Path(scratch) / f"{spec.task}-batch.json"
            batch_file.write_text(json.dumps(batch_payloads(spec, examples, cfg.gateway_url)), encoding="utf-8")
            point = partial(load, batch_file, BATCH_CONCURRENCY, settings.duration_s, settings.warmup_s)
            row = counted(processes, point)
            batch = BatchPoint(**vars(row), texts_per_body=BATCH_TEXTS, texts_per_s=round(row.rps * BATCH_TEXTS, 1))
    return TaskResult(
        version=version,
        runtime=runtime,
        examples=len(examples),
        gateway_window_ms=window_ms,
        ceiling=top,
        ceiling_fp32=fp32,
        torchserve=direct,
        gateway=gateway,
        gateway_second=second,
        second_gateway_window_ms=second_ms,
        peer=peer,
        gateway_batch=batch,
    )


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
    settings = LoadSettings(tuple(int(c) for c in args.concurrency.split(",")), args.duration, args.warmup)
    cfg = StackConfig.from_env()
    with running_stack(cfg):
        tasks = {
            name: bench_task(cfg, catalog[name], settings, args.examples, args.coalesce_window_ms)
            for name in args.task or list(catalog)
        }
    results = Results(Machine(os.cpu_count(), sys.version.split()[0]), settings, tasks)
    print(format_table(results))
    write_results(results, Path(args.out))
