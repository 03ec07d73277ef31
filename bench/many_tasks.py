"""`python -m bench.many_tasks`: what many small classifiers cost on one machine, measured on the running stack.

It publishes N small text tasks as `task add` makes them (`bench.small_tasks`: scaled to zero when idle), lets
a gateway that owns the scaling policy (a short idle period, so the run takes minutes) route them and scale
them to zero, and prints, in one run:
- the stack's TorchServe memory (frontend and every worker, PSS and RSS) before the tasks and with all N idle,
  and so what an idle task costs;
- a hot built-in task's latency at concurrency 8 with none of the tasks registered and with all N, through the
  stack's own gateway;
- the first answer of cold tasks, one cold start after another (p50, p95);
- a burst over K cold tasks at once under a budget that holds B workers beside what runs: each client waits as
  Retry-After says and sends again, up to a minute; every answer's status, the time to each task's answer;
- how long each task took to build and publish, and the sync that registered them all.
The tasks are removed at the end (`--keep` keeps them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from bench.measure import LoadPoint, load, payloads, sample
from bench.processes import memory_mib, stack_processes
from bench.report import write_results
from bench.servers import running_stack
from bench.small_tasks import linear_text_spec, photo_data, photo_spec, publish, text_data
from contract.catalog import REPO_ROOT, TaskSpec, load_catalog
from gateway.scaling.memory import worker_mb
from modelops.local import torchserve, web
from modelops.local.config import StackConfig
from modelops.local.s3 import default_s3_env
from modelops.serve.torchserve import ManagementClient
from modelops.store.s3 import ModelStore
from modelops.train.data import data_dir

DEFAULT_OUT = REPO_ROOT / "docs" / "bench" / "many_tasks.json"
PREFIX = "many"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 1) if ordered else 0.0


def torchserve_memory(cfg: StackConfig, models: list[str]) -> dict[str, float]:
    """PSS and RSS (MiB) of TorchServe's frontend and every worker of `models`, summed, and the worker count."""
    processes = {
        name: p for name, p in stack_processes(cfg, models).items() if name.startswith(("worker", "torchserve"))
    }
    memory = memory_mib(processes)
    return {
        "pss_mib": round(sum(v for v in memory["pss"].values() if v), 1),
        "rss_mib": round(sum(v for v in memory["rss"].values() if v), 1),
        "workers": sum(1 for name in processes if name.startswith("worker")),
    }


def oom_kills() -> int:
    """Processes the kernel's out-of-memory killer has ended since boot (Linux's /proc/vmstat)."""
    with open("/proc/vmstat", encoding="ascii") as vmstat:
        return next((int(line.split()[1]) for line in vmstat if line.startswith("oom_kill ")), 0)


def workers_of(mgmt: ManagementClient, model: str) -> int:
    return len((mgmt.describe(model) or [{}])[0].get("workers", []))


def held_by_workers(mgmt: ManagementClient, models: list[str]) -> float:
    """The workers' memory as the scaler counts it (resident, read on this host)."""
    return sum(
        worker_mb(worker) or 0.0 for model in models for worker in (mgmt.describe(model) or [{}])[0].get("workers", [])
    )


def bounded_cold(gateway: str, names: list[str]) -> list[bool]:
    listed = {m["task"]: m for m in httpx.get(f"{gateway}/v1/models", timeout=60).json()["models"]}
    return [(listed.get(n, {}).get("scaling") or {}).get("state") == "cold" for n in names]


def cold(mgmt: ManagementClient, model: str) -> bool:
    return workers_of(mgmt, model) == 0


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            raise SystemExit(f"not within {timeout_s:.0f} s: {what}")
        time.sleep(1)
    return time.monotonic() - started


def routed(gateway: str, tasks: list[str]) -> bool:
    listed = {m["task"] for m in httpx.get(f"{gateway}/v1/models", timeout=60).json()["models"]}
    return set(tasks) <= listed


def hot_latency(cfg: StackConfig, spec: TaskSpec, scratch: Path, duration: float) -> LoadPoint:
    """The built-in task at concurrency 8 through the stack's gateway."""
    payload_file = scratch / f"hot-{spec.task}.json"
    payload_file.write_text(json.dumps(payloads(spec, sample(spec, 64), "gateway", cfg.gateway_url, "")))
    return load(payload_file, 8, duration, 2)


def cold_starts(gateway: str, mgmt: ManagementClient, specs: list[TaskSpec]) -> list[float]:
    """One call to each cold task after another: the first answer's latency (ms)."""
    latencies = []
    with httpx.Client(base_url=gateway, timeout=120) as http:
        for spec in specs:
            wait_until(partial(cold, mgmt, spec.model_name), 120, f"{spec.task} cold")
            started = time.perf_counter()
            response = http.post(spec.route, json={"text": "a film I would watch again"})
            if response.status_code != 200:
                raise SystemExit(f"cold call to {spec.task}: HTTP {response.status_code} {response.text[:200]}")
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def photo_cold_starts(
    cfg: StackConfig, gateway: str, mgmt: ManagementClient, store: ModelStore, scratch: Path, count: int
) -> list[float]:
    """A photo task as `task add` makes it, scaled to zero and called `count` times: each first answer (ms)."""
    spec = photo_spec(f"{PREFIX}_photos", photo_data(data_dir(), scratch / "photos"))
    publish([spec], store, scratch / "build")
    syncer = torchserve.syncer(cfg, load_catalog(), store)
    syncer.run_once()
    syncer.mgmt.close()
    wait_until(lambda: routed(gateway, [spec.task]), 300, "the photo task routed")
    photo = next((scratch / "photos" / "running").glob("*.jpg")).read_bytes()
    latencies = []
    with httpx.Client(base_url=gateway, timeout=120) as http:
        for _ in range(count):
            mgmt.scale(spec.model_name, (mgmt.describe(spec.model_name) or [{}])[0]["modelVersion"], 0)
            wait_until(lambda: all(bounded_cold(gateway, [spec.task])), 60, "the gateway sees it cold")
            started = time.perf_counter()
            response = http.post(spec.route, files={"image": ("photo.jpg", photo, "image/jpeg")})
            if response.status_code != 200:
                raise SystemExit(f"cold call to {spec.task}: HTTP {response.status_code} {response.text[:200]}")
            latencies.append((time.perf_counter() - started) * 1000)
    store.unpublish(spec.model_name)
    return latencies


async def burst(gateway: str, specs: list[TaskSpec], limit_s: float = 60.0) -> dict[str, Any]:
    """Every task called at once; a 503 with Retry-After is waited out and sent again, until `limit_s`."""
    statuses: Counter[str] = Counter()

    async def one(http: httpx.AsyncClient, spec: TaskSpec) -> float | None:
        started = time.monotonic()
        while time.monotonic() - started < limit_s:
            try:
                response = await http.post(spec.route, json={"text": "not what I hoped for"})
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
                return None
            code = response.json().get("error", {}).get("code", "") if response.status_code != 200 else ""
            statuses[f"{response.status_code} {code}".strip()] += 1
            if response.status_code == 200:
                return time.monotonic() - started
            if response.status_code != 503 or "retry-after" not in response.headers:
                return None
            await asyncio.sleep(min(float(response.headers["retry-after"]), 2.0))
        return None

    async with httpx.AsyncClient(base_url=gateway, timeout=120) as http:
        answered = await asyncio.gather(*(one(http, spec) for spec in specs))
    times = [t for t in answered if t is not None]
    return {
        "tasks": len(specs),
        "answered": len(times),
        "statuses": dict(statuses),
        "answer_s_p50": round(statistics.median(times), 1) if times else None,
        "answer_s_max": round(max(times), 1) if times else None,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.many_tasks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=50, help="small tasks to register")
    parser.add_argument("--cold", type=int, default=30, help="cold starts to time, one after another")
    parser.add_argument("--photo-starts", type=int, default=10, help="cold starts of one photo task (0: none)")
    parser.add_argument("--burst", type=int, default=20, help="cold tasks called at once")
    parser.add_argument("--budget-workers", type=int, default=5, help="workers the burst's budget holds")
    parser.add_argument("--hot-task", default="disaster", help="the built-in task whose latency is compared")
    parser.add_argument("--duration", type=float, default=20, help="seconds of each hot-task load point")
    parser.add_argument("--idle-s", type=float, default=15, help="the bench gateway's idle period")
    parser.add_argument("--keep", action="store_true", help="leave the tasks published")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="JSON results file")
    args = parser.parse_args(argv)
    cfg = StackConfig.from_env()
    catalog = load_catalog()
    results: dict[str, Any] = {"settings": vars(args)}
    with running_stack(cfg), tempfile.TemporaryDirectory(prefix="many-tasks-") as scratch_dir:
        scratch = Path(scratch_dir)
        os.environ.update(default_s3_env(cfg))
        store = ModelStore()
        mgmt = torchserve.management_client(cfg)
        builtins = [spec.model_name for spec in catalog.values()]
        results["before"] = torchserve_memory(cfg, builtins)
        hot = catalog[args.hot_task]
        results["hot_without"] = hot_latency(cfg, hot, scratch, args.duration)
        print(f"before: {results['before']}, hot p95 {results['hot_without'].p95_ms} ms", file=sys.stderr)

        names = [f"{PREFIX}_{i:03d}" for i in range(args.tasks)]
        paths = text_data(data_dir(), scratch / "data", args.tasks)
        specs = [linear_text_spec(name, path) for name, path in zip(names, paths, strict=True)]
        build_s = []
        for spec in specs:
            started = time.perf_counter()
            publish([spec], store, scratch / "build")
            build_s.append(time.perf_counter() - started)
        results["build_s_per_task"] = {"p50": percentile(build_s, 0.5), "max": round(max(build_s), 1)}
        started = time.perf_counter()
        syncer = torchserve.syncer(cfg, catalog, store)
        outcomes = syncer.run_once()
        syncer.mgmt.close()
        results["sync_s"] = round(time.perf_counter() - started, 1)
        print(
            f"built {args.tasks} tasks, p50 {results['build_s_per_task']['p50']} s; sync {results['sync_s']} s",
            file=sys.stderr,
        )
        assert all(outcomes[n] in ("registered", "already-serving") for n in names), outcomes
        env = {
            "GATEWAY_SCALING": "owner",  # in place of the stack's gateway, which is stopped meanwhile
            "GATEWAY_SCALE_IDLE_S": str(args.idle_s),
            "GATEWAY_TASK_REFRESH_INTERVAL_S": "2",
        }
        try:
            with web.second_gateway(cfg, env) as owner:
                results["discovered_s"] = round(wait_until(lambda: routed(owner.gateway_url, names), 900, "routed"), 1)
                results["idle_wait_s"] = round(
                    wait_until(lambda: all(workers_of(mgmt, n) == 0 for n in names), 900, "all idle"), 1
                )
                results["idle"] = torchserve_memory(cfg, builtins + names)
                added = results["idle"]["pss_mib"] - results["before"]["pss_mib"]
                results["idle_pss_mib_per_task"] = round(added / args.tasks, 2)
                results["hot_with"] = hot_latency(cfg, hot, scratch, args.duration)
                latencies = cold_starts(owner.gateway_url, mgmt, specs[: args.cold])
                results["cold_start_ms"] = {
                    "count": len(latencies),
                    "p50": percentile(latencies, 0.5),
                    "p95": percentile(latencies, 0.95),
                    "max": round(max(latencies), 1),
                }
                print(f"cold starts: {results['cold_start_ms']}", file=sys.stderr)
                if args.photo_starts:
                    photos = photo_cold_starts(cfg, owner.gateway_url, mgmt, store, scratch, args.photo_starts)
                    results["photo_cold_start_ms"] = {
                        "count": len(photos),
                        "p50": percentile(photos, 0.5),
                        "p95": percentile(photos, 0.95),
                        "max": round(max(photos), 1),
                    }
            for name in names:  # cold, as the idle period left them
                mgmt.scale(name, (mgmt.describe(name) or [{}])[0]["modelVersion"], 0)
            worker_mib = 300.0  # a small task's worker: 250-300 MB resident
            budget = held_by_workers(mgmt, builtins) + args.budget_workers * worker_mib
            budget_env = {
                **env,
                "GATEWAY_SCALE_IDLE_S": "600",
                "GATEWAY_WORKER_MEMORY_ESTIMATE_MB": str(worker_mib),
                "GATEWAY_WORKER_MEMORY_BUDGET_MB": str(round(budget)),
            }
            with web.second_gateway(cfg, budget_env) as bounded:
                wait_until(lambda: routed(bounded.gateway_url, names), 900, "routed")
                for name in names:  # cold again after the gateway described each
                    mgmt.scale(name, (mgmt.describe(name) or [{}])[0]["modelVersion"], 0)
                wait_until(lambda: all(bounded_cold(bounded.gateway_url, names)), 60, "the gateway sees them cold")
                killed = oom_kills()
                results["burst"] = asyncio.run(burst(bounded.gateway_url, specs[: args.burst]))
                results["burst"]["budget_mib"] = round(budget)
                results["burst"]["oom_kills"] = oom_kills() - killed
        finally:
            if not args.keep:
                for name in names:
                    store.unpublish(name)
                syncer = torchserve.syncer(cfg, catalog, store)
                syncer.run_once()
                syncer.mgmt.close()
            mgmt.close()
    report(results)
    write_results(results, Path(args.out))


def report(results: dict[str, Any]) -> None:
    before, idle = results["before"], results["idle"]
    without, with_tasks = results["hot_without"], results["hot_with"]
    n = results["settings"]["tasks"]
    print(
        f"TorchServe memory, built-ins only: PSS {before['pss_mib']} MiB, RSS {before['rss_mib']} MiB, "
        f"{before['workers']} workers"
    )
    print(
        f"with {n} tasks idle:             PSS {idle['pss_mib']} MiB, RSS {idle['rss_mib']} MiB, "
        f"{idle['workers']} workers; {results['idle_pss_mib_per_task']} MiB PSS per idle task"
    )
    print(
        f"hot {results['settings']['hot_task']} at c=8: p95 {without.p95_ms} ms without the tasks, "
        f"{with_tasks.p95_ms} ms with them ({with_tasks.p95_ms / without.p95_ms:.2f}x); "
        f"{without.rps} vs {with_tasks.rps} req/s"
    )
    for kind in ("cold_start_ms", "photo_cold_start_ms"):
        if kind in results:
            cold = results[kind]
            what = "photo task" if kind.startswith("photo") else "text tasks"
            print(
                f"cold first answers, {what} ({cold['count']}): p50 {cold['p50']} ms, p95 {cold['p95']} ms, "
                f"max {cold['max']} ms"
            )
    b = results["burst"]
    print(
        f"burst over {b['tasks']} cold tasks, budget {b['budget_mib']} MiB: {b['answered']} answered "
        f"(p50 {b['answer_s_p50']} s, slowest {b['answer_s_max']} s); statuses {b['statuses']}; "
        f"out-of-memory kills {b['oom_kills']}"
    )
    print(
        f"build per task p50 {results['build_s_per_task']['p50']} s; sync of all {results['sync_s']} s; "
        f"routed by a new gateway in {results['discovered_s']} s"
    )


if __name__ == "__main__":
    main()
