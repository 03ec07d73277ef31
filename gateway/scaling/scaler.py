"""Workers where the calls are: a task nobody calls is scaled to zero, a call to a cold task starts a worker
while the call waits, a deep queue gets another worker, and the workers' memory stays within a budget. The
decisions are `gateway.scaling.policy`'s; this module acts on them through TorchServe's management API
(`PUT /models/{model}?min_worker=N&max_worker=N`) and holds the calls that must wait.

Every prediction passes through `Scaler.call`. For a warm task that costs a counter and a time stamp. A call to
a cold task waits for one start of that task (concurrent calls share it; a TorchServe told twice to run one
worker runs one), for at most `scale_start_wait_s`: past it the caller gets 503 `model_starting` with
Retry-After while the start goes on. A start that cannot fit the memory budget even after scaling the least
recently used idle tasks to zero is refused: 503 `capacity_full` with Retry-After.

One gateway owns the policy for its TorchServes (`GATEWAY_SCALING=owner`, the default): it scales down and
evicts. A gateway beside it (`follow`) starts cold tasks for its own callers and scales nothing down, so two
gateways never undo each other's work; `off` leaves workers as the sync registered them. The owner judges
idleness by what it forwards itself and by TorchServe's own count of inference requests per model (its metrics
API), so a task that only another gateway's callers use is not taken for idle.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

from contract.catalog import TaskSpec
from contract.logs import log_event
from contract.status import TaskScaling
from gateway.metrics import GatewayMetrics
from gateway.scaling import policy
from gateway.scaling.memory import worker_mb
from gateway.scaling.policy import Rules, TaskLoad
from gateway.scaling.traffic import request_counts
from gateway.settings import Settings
from gateway.torchserve.client import Upstream
from gateway.torchserve.errors import CapacityFull, NotReady, Starting, TorchServeFailure, Unreachable, UpstreamTimeout

logger = logging.getLogger(__name__)

T = TypeVar("T")
# TorchServe's answer to a prediction of a model registered with no worker
_NO_WORKER = "no worker"


class Scaler:
    """Scaling of every model on the managed upstreams (those with a management API). `specs` gives the task
    specs routed now, by model name."""

    def __init__(
        self,
        settings: Settings,
        metrics: GatewayMetrics,
        upstreams: list[Upstream],
        specs: Callable[[], dict[str, TaskSpec]],
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.upstreams = [u for u in upstreams if u.config.management_url is not None]
        self.specs = specs
        self.owner = settings.scaling == "owner"
        self.enabled = settings.scaling != "off" and bool(self.upstreams)
        self.rules = Rules(
            idle_s=settings.scale_idle_s,
            budget_mb=settings.worker_memory_budget_mb,
            up_after_s=settings.scale_up_after_s,
            down_after_s=settings.scale_down_after_s,
        )
        self.loads: dict[str, TaskLoad] = {}
        # the default version each model serves, as TorchServe said on the last refresh
        self.versions: dict[str, str | None] = {}
        self.starting: dict[str, asyncio.Task[None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._room = asyncio.Lock()
        self._starts = asyncio.Semaphore(settings.scale_max_starting)
        self._seen_counts: dict[str, float] = {}
        # predictions this gateway sent each model since the last look at TorchServe's counts
        self._sent: dict[str, int] = {}
        self._loop: asyncio.Task[None] | None = None
        self.timeout = httpx.Timeout(settings.scale_start_timeout_s, connect=settings.connect_timeout_s)
        self.quick = httpx.Timeout(settings.upstream_timeout_s, connect=settings.connect_timeout_s)

    # --- what it knows ---------------------------------------------------------------------------------

    def load(self, model: str) -> TaskLoad:
        """The model's load record, made from its spec on first use (an unknown model is kept as registered)."""
        found = self.loads.get(model)
        spec = self.specs().get(model)
        fewest, most = spec.worker_range if spec else (1, 1)
        if found is None:
            found = self.loads[model] = TaskLoad(
                model=model,
                fewest=fewest,
                warm=spec.workers if spec else 1,
                most=most,
                batch_size=spec.batch_size if spec else 1,
                worker_mb=self.settings.worker_memory_estimate_mb,
                workers=spec.workers if spec else 1,
                last_used=time.monotonic(),  # a task first seen gets a whole idle period
            )
        elif spec is not None:  # a new version's spec may have changed the range
            found.fewest, found.warm, found.most, found.batch_size = fewest, spec.workers, most, spec.batch_size
        return found

    def state(self, model: str) -> str:
        """`warm`, `starting` or `cold` (scaled to zero)."""
        if model in self.starting:
            return "starting"
        return "warm" if self.load(model).workers > 0 else "cold"

    def scaling(self, model: str) -> TaskScaling | None:
        """What `/v1/models` shows of a model's scaling; None when this gateway does not scale."""
        if not self.enabled:
            return None
        load = self.load(model)
        unused = time.monotonic() - load.last_used
        return TaskScaling(
            state=self.state(model),
            workers=load.workers,
            min_workers=load.fewest,
            max_workers=load.most,
            last_used=datetime.fromtimestamp(time.time() - unused, UTC).isoformat(timespec="seconds"),
            idle_s=round(unused, 1),
            memory_mb=round(load.memory_mb, 1),
            worker_memory_mb=round(load.worker_mb, 1),
        )

    def _lock(self, model: str) -> asyncio.Lock:
        lock = self._locks.get(model)
        if lock is None:
            lock = self._locks[model] = asyncio.Lock()
        return lock

    # --- the calls -------------------------------------------------------------------------------------

    async def call(self, model: str, send: Callable[[], Awaitable[T]], items: int = 1) -> T:
        """One prediction of `model` (`items` texts or photos in it): warmed first when cold, sent again once
        after a start when TorchServe says it has no worker (the scaler's view was older than TorchServe's)."""
        if not self.enabled:
            return await send()
        load = self.load(model)
        load.in_flight += items
        load.last_used = time.monotonic()
        self._sent[model] = self._sent.get(model, 0) + 1
        try:
            if load.workers == 0 or model in self.starting:
                await self.warm(model)
            try:
                return await send()
            except NotReady as failure:
                if _NO_WORKER not in str(failure).lower():
                    raise
                load.workers = load.ready = 0
                await self.warm(model)
                return await send()
        finally:
            load.in_flight -= items
            load.last_used = time.monotonic()

    async def warm(self, model: str) -> None:
        """Wait until `model` has a worker: one start per model however many callers wait for it, each caller
        waiting at most `scale_start_wait_s` (the start goes on without them)."""
        started = self.starting.get(model)
        if started is None:
            started = self.starting[model] = asyncio.create_task(self._start(model), name=f"start-{model}")
            started.add_done_callback(lambda _: self.starting.pop(model, None))
        try:
            await asyncio.wait_for(asyncio.shield(started), self.settings.scale_start_wait_s)
        except TimeoutError:
            raise Starting(f"model '{model}' is starting (scaled to zero while idle); retry in a few seconds") from None

    async def _start(self, model: str) -> None:
        load = self.load(model)
        began = time.perf_counter()
        async with self._lock(model):
            if load.workers > 0:
                return
            await self._make_room(model, 1)
            load.workers = max(load.warm, 1)  # counted from now on, so concurrent starts see it in the budget
            try:
                async with self._starts:
                    await self._scale_all(model, load.workers, self.timeout)
            except TorchServeFailure:
                load.workers = 0
                raise
            load.ready = load.workers  # a synchronous scale answers once they are up
        seconds = time.perf_counter() - began
        self.metrics.cold_starts.labels(model).inc()
        self.metrics.cold_start_seconds.observe(seconds)
        log_event(logger, "scaling.started", model=model, workers=load.workers, seconds=round(seconds, 2))

    async def _make_room(self, model: str, workers: int) -> None:
        """Scale the least recently used idle tasks to zero until `workers` more of `model` fit the budget;
        `CapacityFull` when they cannot."""
        async with self._room:
            evict = policy.room_for(list(self.loads.values()), self.rules, model, workers)
            if evict is None:
                self.metrics.budget_refusals.labels(model).inc()
                used = sum(load.memory_mb for load in self.loads.values())
                log_event(
                    logger,
                    "scaling.no_room",
                    logging.WARNING,
                    model=model,
                    used_mb=round(used),
                    budget_mb=self.rules.budget_mb,
                )
                raise CapacityFull(
                    f"no memory for a worker of '{model}' within the worker budget "
                    f"({self.rules.budget_mb:.0f} MB): every other worker is busy or kept warm; retry shortly"
                )
            if evict and not self.owner:
                raise CapacityFull(f"no memory for a worker of '{model}' until the owning gateway frees some")
            for other in evict:
                await self._to_zero(other, "budget")

    async def _to_zero(self, model: str, why: str) -> None:
        load = self.load(model)
        if load.in_flight or load.workers == 0:
            return
        load.workers = load.ready = 0
        await self._scale_all(model, 0, self.quick)
        self.metrics.scale_events.labels(model, "down").inc()
        log_event(logger, "scaling.to_zero", model=model, reason=why)

    async def _scale_all(self, model: str, workers: int, wait: httpx.Timeout) -> None:
        """Tell every managed upstream that has `model` to run `workers` workers of its default version."""
        outcomes = await asyncio.gather(*(self._scale(u, model, workers, wait) for u in self.upstreams))
        if not any(outcomes):
            raise NotReady(f"no TorchServe could scale model '{model}' to {workers} worker(s)")

    async def _scale(self, upstream: Upstream, model: str, workers: int, wait: httpx.Timeout) -> bool:
        url = f"{upstream.config.management_url}/models/{model}"
        params: dict[str, Any] = {"min_worker": workers, "max_worker": workers, "synchronous": "true"}
        try:
            response = await upstream.send("PUT", url, "management", wait, params=params)
        except (Unreachable, UpstreamTimeout) as exc:
            log_event(logger, "scaling.failed", logging.WARNING, model=model, upstream=upstream.name, reason=str(exc))
            return False
        if response.status_code != 200:
            log_event(
                logger,
                "scaling.failed",
                logging.WARNING,
                model=model,
                upstream=upstream.name,
                status=response.status_code,
                reason=response.text[:300],
            )
        return response.status_code == 200

    # --- the loop --------------------------------------------------------------------------------------

    def start(self) -> None:
        if self.enabled:
            self._loop = asyncio.create_task(self._forever(), name="scaling")

    async def aclose(self) -> None:
        tasks = [t for t in (self._loop, *self.starting.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _forever(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception as exc:  # a bug here must not end scaling for the app's lifetime
                log_event(logger, "scaling.tick_failed", logging.ERROR, error=repr(exc))
            await asyncio.sleep(self.settings.scale_interval_s)

    async def tick(self) -> None:
        """Read what TorchServe runs, then act: idle tasks to zero, deep queues one worker more, shallow ones
        one fewer (the owner only for the downward moves)."""
        await self.refresh()
        now = time.monotonic()
        if self.owner:
            for model in policy.idle(self.loads.values(), self.rules, now):
                async with self._lock(model):
                    await self._to_zero(model, "idle")
        for load in list(self.loads.values()):
            step = policy.under_load(load, self.rules, now)
            if step > 0 or (step < 0 and self.owner):
                await self._step(load, step)

    async def _step(self, load: TaskLoad, step: int) -> None:
        async with self._lock(load.model):
            try:
                if step > 0:
                    await self._make_room(load.model, step)
                await self._scale_all(load.model, load.workers + step, self.timeout)
            except TorchServeFailure as exc:
                log_event(logger, "scaling.step_refused", model=load.model, step=step, reason=str(exc))
                return
            load.workers += step
            load.ready = load.workers
        self.metrics.scale_events.labels(load.model, "up" if step > 0 else "down").inc()
        log_event(logger, "scaling.step", model=load.model, workers=load.workers)

    async def refresh(self) -> None:
        """What the first reachable managed upstream runs: each model's workers, their memory and its default
        version; and, for the owner, which models other callers used since the last refresh."""
        for upstream in self.upstreams:
            try:
                names = await upstream.models(self.quick)
                described = await asyncio.gather(*(upstream.describe(m, self.quick) for m in names))
            except (Unreachable, UpstreamTimeout):
                continue
            for model, description in zip(names, described, strict=True):
                if description:
                    self._observe(model, description[0])
            for gone in set(self.loads) - set(names):
                del self.loads[gone]
            if self.owner and upstream.config.metrics_url:
                await self._other_callers(upstream)
            return

    def _observe(self, model: str, default: dict[str, Any]) -> None:
        load = self.load(model)
        self.versions[model] = default.get("modelVersion")
        workers = default.get("workers") or []
        ready = [w for w in workers if w.get("status") == "READY"]
        load.ready = len(ready)
        measured = [mb for w in ready if (mb := worker_mb(w))]
        if measured:
            load.worker_mb = max(measured)
        if model not in self.starting and not self._lock(model).locked():
            load.workers = len(workers)

    async def _other_callers(self, upstream: Upstream) -> None:
        """Models whose TorchServe request count grew since the last look by more than this gateway sent count
        as used now, and keep their workers: the owner cannot see how deep other gateways' queues are, so it
        gives a worker back only once their calls have stopped for `down_after_s`."""
        counts = await request_counts(upstream, self.quick)
        now = time.monotonic()
        for model, count in counts.items():
            grown = count - self._seen_counts.get(model, count)
            self._seen_counts[model] = count
            if model in self.loads and grown > self._sent.pop(model, 0):
                load = self.loads[model]
                load.last_used = max(load.last_used, now)
                load.shallow_since = None
