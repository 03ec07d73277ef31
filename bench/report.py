"""The results of `python -m bench` as types, and the one place any bench's typed results become the JSON it
writes and the table it prints.

docs/benchmarks.md and docs/bench/*.json quote these keys and lines, so a field's name is its JSON key and the
order of the fields is the order of the keys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from bench.measure import Ceiling, Curve, LoadPoint, LoadSettings


@dataclass(frozen=True, kw_only=True)
class BatchPoint(LoadPoint):
    """A load point of `{"texts": [...]}` bodies: requests per second, and the texts per second they carry."""

    texts_per_body: int
    texts_per_s: float


@dataclass(frozen=True, kw_only=True)
class Ratios:
    """One task's paths against each other and against the in-process ceiling."""

    optimised_vs_fp32_ceiling: float | None = None
    second_gateway_vs_ceiling: float | None = None
    gateway_vs_ceiling: float
    gateway_vs_peer_rps: float
    gateway_vs_peer_p95: float
    # what the gateway adds to a request (its latency minus its own TorchServe round trip, per request)
    gateway_overhead_p50_ms: float
    # the same from two separate runs (gateway p50 minus TorchServe-direct p50): noisier, shown for comparison
    gateway_minus_direct_p50_ms: float


@dataclass(frozen=True, kw_only=True)
class TaskResult:
    """Every serving path of one task, measured in one run: the served archive's ceilings, TorchServe direct,
    the gateway (and a second one with another coalescing window), the peer baseline and batch bodies."""

    version: str
    runtime: str
    examples: int
    gateway_window_ms: float
    ceiling: Ceiling
    ceiling_fp32: Ceiling | None = None
    torchserve: Curve
    gateway: Curve
    gateway_second: Curve | None = None
    second_gateway_window_ms: float | None = None
    peer: Curve
    gateway_batch: BatchPoint | None = None
    # derived from the paths above, never passed, so the ratios always say what those paths measured
    ratios: Ratios = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ratios", self._ratios())

    def _ratios(self) -> Ratios:
        """High: at the run's highest concurrency; the gateway's own time at its lowest."""
        ceiling, gateway, peer, second = self.ceiling, self.gateway, self.peer, self.gateway_second
        low, high = min(gateway), max(gateway)
        own = gateway[low].own_p50_ms
        assert own is not None, "the gateway's load points pair its own time"
        return Ratios(
            optimised_vs_fp32_ceiling=(
                round(ceiling.items_per_s / self.ceiling_fp32.items_per_s, 2) if self.ceiling_fp32 else None
            ),
            second_gateway_vs_ceiling=round(second[high].rps / ceiling.items_per_s, 3) if second else None,
            gateway_vs_ceiling=round(gateway[high].rps / ceiling.items_per_s, 3),
            gateway_vs_peer_rps=round(gateway[high].rps / max(peer[high].rps, 1e-9), 2),
            gateway_vs_peer_p95=round(gateway[high].p95_ms / max(peer[high].p95_ms, 1e-9), 2),
            gateway_overhead_p50_ms=own,
            gateway_minus_direct_p50_ms=round(gateway[low].p50_ms - self.torchserve[low].p50_ms, 2),
        )


@dataclass(frozen=True)
class Machine:
    cpus: int | None
    python: str


@dataclass(frozen=True)
class Results:
    machine: Machine
    settings: LoadSettings
    tasks: dict[str, TaskResult]


def as_json(value: Any) -> Any:
    """Typed results (nested in dicts and lists or not) as plain JSON values. An optional field (one that
    defaults to None) left None is absent, as the dicts these types replace left the key out."""
    if is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: as_json(getattr(value, f.name))
            for f in fields(value)
            if not (f.default is None and getattr(value, f.name) is None)
        }
    if isinstance(value, dict):
        return {key: as_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [as_json(item) for item in value]
    return value


def write_results(results: Any, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(as_json(results), indent=2), encoding="utf-8")
    print(f"results: {out}")


def _row(task: str, label: str, point: LoadPoint) -> str:
    """One load point's line of the table, with the stack's CPU per request where it was counted."""
    cpu = point.cpu_ms_per_request
    cpu_text = f"   cpu ms/req: gateway {cpu.gateway}, frontend {cpu.frontend}, workers {cpu.workers}" if cpu else ""
    return (
        f"{task:<10} {label:<11} {point.concurrency:>4} {point.rps:>8.1f} {point.p50_ms:>8.1f} "
        f"{point.p95_ms:>8.1f} {point.p99_ms:>8.1f} {sum(point.errors.values()):>6}{cpu_text}"
    )


def format_table(results: Results) -> str:
    lines = [
        f"{'task':<10} {'path':<11} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6}"
    ]
    for task, result in results.tasks.items():
        for name, figure in (("ceiling", result.ceiling), ("ceiling_fp32", result.ceiling_fp32)):
            if figure is not None:
                label = f"{figure.runtime} in-process, {figure.workers} handler(s), {figure.threads} thread(s)"
                lines.append(f"{task:<10} {name:<11} {'-':>4} {figure.items_per_s:>8.1f}   {label}")
        paths = [("torchserve", result.torchserve), (f"gw-w{result.gateway_window_ms:g}", result.gateway)]
        if result.gateway_second is not None:
            paths.append((f"gw-w{result.second_gateway_window_ms:g}", result.gateway_second))
        for label, curve in [*paths, ("peer", result.peer)]:
            lines.extend(_row(task, label, point) for point in curve.values())
        if result.gateway_batch is not None:
            batch = result.gateway_batch
            lines.append(
                f"{_row(task, 'gw-batch', batch)}   {batch.texts_per_body}-text bodies: {batch.texts_per_s:.1f} texts/s"
            )
        lines.append(f"{task:<10} ratios      {json.dumps(as_json(result.ratios))}")
    return "\n".join(lines)
