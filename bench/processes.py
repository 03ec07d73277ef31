"""The stack's processes by readable name, and what they use: resident memory (the soak) and CPU time (the
benchmark's CPU per request). psutil reads both from /proc."""

from __future__ import annotations

import psutil

from modelops.local import services, torchserve
from modelops.local.config import StackConfig

MIB = 1024 * 1024


def stack_processes(cfg: StackConfig, models: list[str]) -> dict[str, psutil.Process]:
    """Every process of the stack, by a readable name: TorchServe's Java frontend (the `torchserve` launcher's
    child) and each worker by model and pid, next to the `make run` supervisor, the gateway, S3, the UI and the
    job worker."""
    found: dict[str, psutil.Process] = {}
    for name in ("supervisor", "gateway", "s3", "ui", "jobs"):
        pid = services.running_pid(cfg, name)
        if pid is not None:
            found[name] = psutil.Process(pid)
    launcher = services.running_pid(cfg, "torchserve")
    if launcher is not None:
        for child in psutil.Process(launcher).children():
            if child.name() == "java":
                found["torchserve frontend"] = child
    mgmt = torchserve.management_client(cfg)
    try:
        for model in models:
            for worker in (mgmt.describe(model) or [{}])[0].get("workers", []):
                found[f"worker {model} {worker['pid']}"] = psutil.Process(int(worker["pid"]))
    finally:
        mgmt.close()
    return found


def memory_mib(processes: dict[str, psutil.Process]) -> dict[str, dict[str, float | None]]:
    """Each process's resident (RSS) and proportional (PSS) memory, `{"rss": {name: MiB}, "pss": {...}}`.

    RSS counts every page a process maps, so the same shared library pages (torch, ONNX Runtime, Python itself,
    mapped by each of six workers) count once per process in a sum of RSS. PSS splits each shared page among the
    processes sharing it, so the sum of PSS is what the stack as a whole holds in memory."""
    out: dict[str, dict[str, float | None]] = {"rss": {}, "pss": {}}
    for name, process in processes.items():
        try:
            info = process.memory_full_info()  # /proc/PID/smaps_rollup: PSS as well as RSS
            out["rss"][name], out["pss"][name] = round(info.rss / MIB, 1), round(info.pss / MIB, 1)
        except psutil.NoSuchProcess:
            out["rss"][name] = out["pss"][name] = None  # a worker TorchServe replaced: reported, not hidden
    return out


def cpu_seconds(processes: dict[str, psutil.Process]) -> dict[str, float]:
    """User + system CPU seconds so far (psutil reads /proc) of the gateway, TorchServe's Java frontend and the
    model's workers together."""
    groups: dict[str, float] = {"gateway": 0.0, "frontend": 0.0, "workers": 0.0}
    for name, process in processes.items():
        group = "workers" if name.startswith("worker") else "frontend" if name == "torchserve frontend" else name
        if group in groups:
            times = process.cpu_times()
            groups[group] += times.user + times.system
    return groups
