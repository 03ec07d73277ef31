"""What one TorchServe worker holds in memory, for the budget.

TorchServe's describe carries a `memoryUsage` per worker, but 0.12 leaves it at 0 unless its system metrics
collector runs, so where the worker runs on the gateway's own host (`make run`, one VM) its resident set is read
from Linux's /proc. Resident, not proportional: a worker's PSS shrinks as more workers share torch's pages and
grows as they stop, so a budget in PSS would admit a start by figures that change under it; RSS counts the
shared pages in every worker, which errs on the safe side and stays put. A pid is taken for a worker only if
its command line is TorchServe's worker's: in a container, the same number may be another process of the
gateway's own namespace. Elsewhere, TorchServe's figure when it gives one, else the configured estimate.
"""

from __future__ import annotations

from typing import Any

_WORKER = b"model_service_worker"
MIB = 2**20


def local_rss_mb(pid: int) -> float | None:
    """The resident memory of TorchServe worker `pid` on this host, in MiB; None when there is no such worker
    here."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            if _WORKER not in cmdline.read():
                return None
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as rollup:
            for line in rollup:
                if line.startswith("Rss:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def worker_mb(worker: dict[str, Any]) -> float | None:
    """One worker's memory from a describe entry: measured here, else TorchServe's own figure, else None."""
    pid = worker.get("pid")
    local = local_rss_mb(int(pid)) if isinstance(pid, int | str) and str(pid).isdigit() else None
    if local:
        return local
    reported = worker.get("memoryUsage") or 0
    return reported / MIB if reported > 0 else None
