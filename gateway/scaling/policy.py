"""When a task's workers go up or down: pure decisions over what the scaler knows, no I/O, so each rule is a unit
test.

A task is *warm* with `workers` workers (its spec's), *cold* with none, or in between while one starts. The rules:
- **to zero**: a task that may go to zero (`min_workers` 0) and has had no prediction in flight for `idle_s`;
- **hands off while starting**: a task whose workers are not all ready yet is neither scaled nor counted as busy;
- **room first**: a start that would take the workers' memory past the budget first scales to zero the least
  recently used tasks that may go to zero and have nothing in flight; if that cannot free enough, the start is
  refused (the caller gets 503 with Retry-After) rather than risking the kernel's out-of-memory killer;
- **more under load**: a task whose items in flight stayed at or above `deep_factor` times its slots (workers x
  batch size; 1: every slot taken, the next call queues) for `up_after_s` gets one more worker, up to
  `max_workers` and the budget; one whose load stayed at or below half of what one worker fewer takes, for
  `down_after_s`, gives one back, down to `min_workers` but never below one (zero is the idle rule's, which
  waits for no call at all). A task started with `workers` thus holds only what its traffic needs once the
  traffic is quiet: the built-ins start with two workers each and keep one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass
class TaskLoad:
    """What the scaler knows of one model now. `workers` counts the ones started or starting, `ready` the ones
    TorchServe lists as ready; `worker_mb` is the memory one of them holds (measured by TorchServe once it ran,
    else the kind's estimate)."""

    model: str
    fewest: int
    warm: int
    most: int
    batch_size: int
    worker_mb: float
    workers: int = 0
    ready: int = 0
    in_flight: int = 0
    last_used: float = float("-inf")
    deep_since: float | None = None
    shallow_since: float | None = None

    @property
    def may_idle(self) -> bool:
        return self.fewest == 0

    @property
    def settled(self) -> bool:
        """Every worker ready. A task whose workers still start (a cold start, a registration by the sync, a
        worker TorchServe restarts) is left alone: scaling it then would stop a worker mid-start and fail the
        call that started it."""
        return self.ready >= self.workers

    @property
    def memory_mb(self) -> float:
        return self.workers * self.worker_mb


@dataclass(frozen=True)
class Rules:
    idle_s: float
    budget_mb: float
    up_after_s: float = 2.0
    down_after_s: float = 30.0
    # 1: one worker of batch 4 under 4 steady callers has every slot taken, and gets its second (the built-ins
    # run one per core under load: 88 against 65 requests/s for disaster at 4 callers, bench.jobs)
    deep_factor: float = 1.0


def idle(loads: Iterable[TaskLoad], rules: Rules, now: float) -> list[str]:
    """The models to scale to zero now: allowed to, warm and settled, nothing in flight, unused for `idle_s`."""
    return [t.model for t in loads if _evictable(t) and now - t.last_used >= rules.idle_s]


def _evictable(load: TaskLoad) -> bool:
    return load.may_idle and load.workers > 0 and load.settled and load.in_flight == 0


def room_for(loads: Iterable[TaskLoad], rules: Rules, model: str, extra_workers: int) -> list[str] | None:
    """The models to scale to zero, least recently used first, before `model` gets `extra_workers` more
    workers within the budget; [] when it fits already, None when it cannot fit (every other worker is busy or
    kept warm by its spec)."""
    tasks = list(loads)
    target = next(t for t in tasks if t.model == model)
    used = sum(t.memory_mb for t in tasks)
    over = used + extra_workers * target.worker_mb - rules.budget_mb
    if over <= 0:
        return []
    evictable = sorted(
        (t for t in tasks if t.model != model and _evictable(t)),
        key=lambda t: t.last_used,
    )
    chosen: list[str] = []
    for task in evictable:
        chosen.append(task.model)
        over -= task.memory_mb
        if over <= 0:
            return chosen
    return None


def under_load(load: TaskLoad, rules: Rules, now: float) -> int:
    """+1, -1 or 0 workers for a settled task by how deep its queue has stayed. Updates the task's timers. The
    calls held while a worker starts say how long a start takes, not what the traffic needs: the clock runs only
    once every worker is ready."""
    if load.workers == 0 or not load.settled:
        load.deep_since = load.shallow_since = None
        return 0
    slots = load.workers * load.batch_size
    if load.in_flight >= rules.deep_factor * slots:
        load.shallow_since = None
        load.deep_since = now if load.deep_since is None else load.deep_since
        if now - load.deep_since >= rules.up_after_s and load.workers < load.most:
            load.deep_since = None
            return 1
        return 0
    load.deep_since = None
    # half of what one worker fewer holds: a load that would fill it again does not send a worker back and forth
    if load.workers > max(load.fewest, 1) and load.in_flight <= (load.workers - 1) * load.batch_size / 2:
        load.shallow_since = now if load.shallow_since is None else load.shallow_since
        if now - load.shallow_since >= rules.down_after_s:
            load.shallow_since = None
            return -1
        return 0
    load.shallow_since = None
    return 0
