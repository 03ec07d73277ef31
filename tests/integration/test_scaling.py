"""Workers by demand on the real TorchServe: tasks added the way `task add` adds them are registered with no
worker, a call starts exactly one however many arrive at once, an idle task is scaled back to zero, a start past
the memory budget first scales the least recently used idle task to zero, and a deep queue gets a second worker
that is given back when the load falls. A gateway with short periods and a small budget runs beside the stack's."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from bench.many_tasks import held_by_workers
from bench.small_tasks import linear_text_spec, publish, text_data
from contract.catalog import TaskSpec
from gateway.scaling.memory import worker_mb
from modelops.local import services, torchserve, web
from modelops.local.config import StackConfig
from modelops.serve.torchserve import ManagementClient
from modelops.train.data import data_dir
from tests.conftest import Stack

pytestmark = pytest.mark.integration

NAMES = ("scale_a", "scale_b", "scale_c")
PERIODS = {
    "GATEWAY_SCALING": "owner",  # the stack's own gateway follows, so these tests' gateways own the policy
    "GATEWAY_SCALE_IDLE_S": "4",
    "GATEWAY_SCALE_INTERVAL_S": "0.5",
    "GATEWAY_SCALE_UP_AFTER_S": "1",
    "GATEWAY_SCALE_DOWN_AFTER_S": "3",
    "GATEWAY_TASK_REFRESH_INTERVAL_S": "1",
}


@pytest.fixture(scope="module")
def small_tasks(live_stack: Stack, stack_root: Path) -> Iterator[list[TaskSpec]]:
    """Three text tasks as `task add` makes them (no worker until called), published and synced; removed after."""
    paths = text_data(data_dir(), stack_root / "scaling-data", len(NAMES))
    specs = [linear_text_spec(name, path) for name, path in zip(NAMES, paths, strict=True)]
    publish(specs, live_stack.store, stack_root / "scaling-build")
    started = time.monotonic()
    outcomes = live_stack.sync()
    assert all(outcomes[s.model_name] == "registered" for s in specs), outcomes
    # registered cold: the sync waited for no worker
    assert time.monotonic() - started < 30
    yield specs
    for spec in specs:
        live_stack.store.unpublish(spec.model_name)
    live_stack.sync()
    mgmt = torchserve.management_client(live_stack.cfg)
    for builtin in live_stack.catalog.values():  # as the sync registered them, for the modules after this one
        mgmt.scale(builtin.model_name, (mgmt.describe(builtin.model_name) or [{}])[0]["modelVersion"], builtin.workers)
    mgmt.close()
    # the stack's gateway drops their routes before the next module's tests list the tasks
    wait_for(lambda: not any(entry(live_stack.gateway, s.task) for s in specs), 60, "the tasks' routes gone")


@pytest.fixture(scope="module")
def mgmt(live_stack: Stack) -> Iterator[ManagementClient]:
    client = torchserve.management_client(live_stack.cfg)
    yield client
    client.close()


def workers(mgmt: ManagementClient, model: str) -> int:
    return len((mgmt.describe(model) or [{}])[0].get("workers", []))


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"not within {timeout_s}s: {what}")


def entry(gateway: str, task: str) -> dict[str, Any]:
    """The task's `/v1/models` entry; {} while the gateway does not route it yet."""
    models = httpx.get(f"{gateway}/v1/models", timeout=30).json()["models"]
    return next((m for m in models if m["task"] == task), {})


def metric(gateway: str, name: str, model: str, label: str = "") -> float:
    """A counter of the gateway's for `model` (and `label`, e.g. `direction="up"`), summed over its series."""
    text = httpx.get(f"{gateway}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and f'model="{model}"' in line and label in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture
def scaled(live_stack: Stack, stack_root: Path, small_tasks: list[TaskSpec]) -> Iterator[str]:
    with web.second_gateway(live_stack.cfg, PERIODS, state_dir=stack_root / "scaling-gateway") as cfg:
        wait_for(lambda: all(entry(cfg.gateway_url, s.task).get("scaling") for s in small_tasks), 60, "tasks routed")
        yield cfg.gateway_url


def call(gateway: str, task: str, text: str = "a fine film") -> httpx.Response:
    return httpx.post(f"{gateway}/v1/{task}", json={"text": text}, timeout=60)


def answered(gateway: str, task: str, text: str = "a fine film") -> None:
    """One call that must succeed; a failure shows the gateway's error body."""
    response = call(gateway, task, text)
    assert response.status_code == 200, response.text


def call_once_cold(
    gateway: str, mgmt: ManagementClient, task: TaskSpec
) -> tuple[threading.Thread, list[httpx.Response]]:
    """A call to `task` once it is scaled to zero, from a thread (the gateway holds it while a worker starts);
    its answer lands in the list."""
    wait_for(lambda: workers(mgmt, task.model_name) == 0, 30, f"{task.task} scaled to zero")
    answers: list[httpx.Response] = []
    caller = threading.Thread(target=lambda: answers.append(call(gateway, task.task)))
    caller.start()
    return caller, answers


def test_an_idle_task_goes_to_zero_and_concurrent_calls_start_one_worker(
    scaled: str, mgmt: ManagementClient, small_tasks: list[TaskSpec]
) -> None:
    task = small_tasks[0]
    wait_for(lambda: workers(mgmt, task.model_name) == 0, 30, f"{task.task} scaled to zero")
    wait_for(lambda: entry(scaled, task.task)["scaling"]["state"] == "cold", 10, "the listing says cold")
    starts_before = metric(scaled, "gateway_cold_starts_total", task.model_name)

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=scaled, timeout=60) as http:
            return await asyncio.gather(*(http.post(f"/v1/{task.task}", json={"text": f"film {i}"}) for i in range(8)))

    answers = asyncio.run(burst())
    assert [r.status_code for r in answers] == [200] * 8, [r.text for r in answers]
    assert workers(mgmt, task.model_name) == 1
    assert metric(scaled, "gateway_cold_starts_total", task.model_name) == starts_before + 1
    listed = entry(scaled, task.task)["scaling"]
    assert listed["state"] == "warm"
    assert listed["workers"] == 1
    assert listed["min_workers"] == 0
    wait_for(lambda: workers(mgmt, task.model_name) == 0, 30, "scaled to zero again after the idle period")
    assert metric(scaled, "gateway_scale_events_total", task.model_name) >= 1
    explained = httpx.post(f"{scaled}/v1/{task.task}/explain", json={"text": "a fine film"}, timeout=60)
    assert explained.status_code == 200, explained.text
    assert explained.json()["explanation"]["words"]


def test_a_bulk_job_on_a_cold_task_starts_it_and_finishes(
    scaled: str, stack_root: Path, mgmt: ManagementClient, small_tasks: list[TaskSpec]
) -> None:
    task = small_tasks[0]
    wait_for(lambda: workers(mgmt, task.model_name) == 0, 30, f"{task.task} scaled to zero")
    worker = StackConfig(state_dir=stack_root / "scaling-jobs", gateway_port=int(scaled.rsplit(":", 1)[1]))
    services.start(worker, web.jobs_worker(worker))
    try:
        rows = "\n".join(["text", *(f"film number {i}, a fine one" for i in range(40))]).encode()
        submitted = httpx.post(
            f"{scaled}/v1/jobs",
            data={"task": task.task, "input_column": "text"},
            files={"file": ("films.csv", rows, "text/csv")},
            timeout=60,
        )
        assert submitted.status_code == 202, submitted.text
        job = f"{scaled}/v1/jobs/{submitted.json()['id']}"
        wait_for(lambda: httpx.get(job, timeout=30).json()["state"] == "succeeded", 120, "the job done")
        results = httpx.get(f"{job}/results", timeout=30).text.splitlines()
        assert len(results) == 40
        assert all('"label"' in line for line in results)
    finally:
        services.stop(worker, "jobs")


def test_the_card_of_a_cold_task_needs_no_worker(
    scaled: str, mgmt: ManagementClient, small_tasks: list[TaskSpec]
) -> None:
    task = small_tasks[1]
    answered(scaled, task.task)
    first = httpx.get(f"{scaled}/v1/models/{task.task}", timeout=30)
    wait_for(lambda: workers(mgmt, task.model_name) == 0, 30, f"{task.task} scaled to zero")
    again = httpx.get(f"{scaled}/v1/models/{task.task}", timeout=30)
    assert again.status_code == 200
    assert again.json() == first.json()
    assert workers(mgmt, task.model_name) == 0


def test_a_deep_queue_gets_another_worker_and_gives_it_back(
    scaled: str, mgmt: ManagementClient, small_tasks: list[TaskSpec]
) -> None:
    task = small_tasks[2]
    assert task.worker_range == (0, 2)
    # long reviews, 32 a body: the worker, not the gateway, is what the callers wait for, so its queue grows
    review = ("A long and winding review of a film that had its moments but never quite held together. " * 40)[:4000]

    async def load(seconds: float) -> list[int]:
        async with httpx.AsyncClient(base_url=scaled, timeout=60) as http:
            stop = time.monotonic() + seconds

            async def one() -> list[int]:
                codes = []
                while time.monotonic() < stop:
                    response = await http.post(f"/v1/{task.task}", json={"texts": [review] * 32})
                    codes.append(response.status_code)
                return codes

            return [code for codes in await asyncio.gather(*(one() for _ in range(12))) for code in codes]

    codes = asyncio.run(load(6))
    assert set(codes) == {200}
    assert metric(scaled, "gateway_scale_events_total", task.model_name, 'direction="up"') == 1  # to max_workers
    wait_for(lambda: workers(mgmt, task.model_name) <= 1, 30, "the extra worker given back")
    assert metric(scaled, "gateway_scale_events_total", task.model_name, 'direction="down"') >= 1


def test_a_quiet_built_in_keeps_one_worker_of_its_two(
    scaled: str, live_stack: Stack, mgmt: ManagementClient, small_tasks: list[TaskSpec]
) -> None:
    builtin = live_stack.catalog["disaster"]
    assert (builtin.workers, builtin.worker_range) == (2, (1, 2))
    wait_for(lambda: workers(mgmt, builtin.model_name) == 1, 30, "one worker given back once quiet")
    time.sleep(6)  # past the idle period: a built-in never goes to zero
    assert workers(mgmt, builtin.model_name) == 1
    assert entry(scaled, builtin.task)["scaling"]["state"] == "warm"
    answered(scaled, builtin.task, "forest fire near the town")


def test_torchserve_killed_while_a_cold_task_starts_leaves_nothing_stuck_starting(
    scaled: str, live_stack: Stack, mgmt: ManagementClient, small_tasks: list[TaskSpec]
) -> None:
    task = small_tasks[1]
    caller, answers = call_once_cold(scaled, mgmt, task)
    time.sleep(0.5)  # the call is held while the worker starts (1.5-3 s for this task)
    java = next(
        p for p in psutil.Process(services.running_pid(live_stack.cfg, "torchserve")).children() if p.name() == "java"
    )
    java.kill()
    caller.join(timeout=60)
    try:
        assert answers, "the call was not answered"
        assert answers[0].status_code == 503, answers[0].text
        assert "Retry-After" in answers[0].headers
        wait_for(lambda: entry(scaled, task.task)["scaling"]["state"] != "starting", 10, "not stuck starting")
    finally:
        services.stop(live_stack.cfg, "torchserve")  # its launcher outlives the JVM
        live_stack.ensure_torchserve()
    wait_for(lambda: call(scaled, task.task).status_code == 200, 60, "answered once TorchServe is back")


def first_worker_pid(mgmt: ManagementClient, model: str, timeout_s: float) -> int:
    """The pid of the task's first worker as soon as TorchServe lists one (polled every 20 ms)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        listed = (mgmt.describe(model) or [{}])[0].get("workers", [])
        if listed and int(listed[0].get("pid") or 0) > 0:
            return int(listed[0]["pid"])
        time.sleep(0.02)
    raise AssertionError(f"no worker of {model} within {timeout_s}s")


def test_a_worker_killed_while_its_task_starts_still_answers_the_held_call(
    scaled: str, mgmt: ManagementClient, small_tasks: list[TaskSpec]
) -> None:
    task = small_tasks[0]
    caller, answers = call_once_cold(scaled, mgmt, task)
    os.kill(first_worker_pid(mgmt, task.model_name, 20), signal.SIGKILL)  # before it has loaded its model
    caller.join(timeout=90)
    assert answers, "the call was not answered"
    # TorchServe starts another worker; the held call gets its answer, or a documented 503 with Retry-After:
    # `model_starting` past the bound, or `model_not_ready` when TorchServe said "Worker died." to each retry
    if answers[0].status_code != 200:
        assert answers[0].status_code == 503, answers[0].text
        assert answers[0].json()["error"]["code"] in ("model_starting", "model_not_ready")
        assert "Retry-After" in answers[0].headers
    wait_for(lambda: entry(scaled, task.task)["scaling"]["state"] != "starting", 30, "not stuck starting")
    answered(scaled, task.task)
    wait_for(lambda: workers(mgmt, task.model_name) == 0, 30, "scaled to zero after the idle period")


def test_a_worker_killed_as_its_task_goes_idle_leaves_the_task_cold_and_callable(
    scaled: str, mgmt: ManagementClient, small_tasks: list[TaskSpec]
) -> None:
    task = small_tasks[2]
    answered(scaled, task.task)
    pid = first_worker_pid(mgmt, task.model_name, 5)
    time.sleep(3.6)  # the idle period is 4 s: TorchServe restarts the worker while the scaler takes it away
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: workers(mgmt, task.model_name) == 0, 40, "scaled to zero")
    wait_for(lambda: entry(scaled, task.task)["scaling"]["state"] == "cold", 10, "listed cold")
    answered(scaled, task.task)


def test_the_owning_gateway_killed_while_a_task_starts_leaves_nothing_stuck(
    live_stack: Stack, stack_root: Path, mgmt: ManagementClient, small_tasks: list[TaskSpec]
) -> None:
    """The scaler keeps no state TorchServe does not: a gateway started again reads each task's workers from
    TorchServe's description, so a start cut short by a SIGKILL is finished or taken back to zero."""
    task = small_tasks[1]
    env = {**web.gateway_env(live_stack.cfg), **PERIODS}
    with web.second_gateway(live_stack.cfg, PERIODS, state_dir=stack_root / "killed-gateway") as cfg:
        gateway = cfg.gateway_url
        wait_for(lambda: entry(gateway, task.task).get("scaling") is not None, 60, "task routed")
        wait_for(lambda: workers(mgmt, task.model_name) == 0, 30, f"{task.task} scaled to zero")
        outcome: list[httpx.Response | httpx.TransportError] = []

        def calling() -> None:
            try:
                outcome.append(call(gateway, task.task))
            except httpx.TransportError as error:
                outcome.append(error)

        caller = threading.Thread(target=calling)
        caller.start()
        first_worker_pid(mgmt, task.model_name, 20)  # the scale-up is under way
        pid = services.running_pid(cfg, "gateway")
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)
        caller.join(timeout=60)
        assert outcome, "the call neither answered nor failed"
        answer = outcome[0]
        if isinstance(answer, httpx.Response):  # answered before the kill; else only the connection was lost
            assert answer.status_code == 200, answer.text
        services.start(cfg, web.gateway(cfg, extra_env=env))
        wait_for(lambda: entry(gateway, task.task).get("scaling") is not None, 60, "routed again")
        assert entry(gateway, task.task)["scaling"]["state"] != "starting"
        answered(gateway, task.task)
        wait_for(lambda: workers(mgmt, task.model_name) == 0, 30, "the new owner scales it to zero when idle")
        assert entry(gateway, task.task)["scaling"]["state"] == "cold"


def test_a_start_past_the_budget_first_scales_the_least_recently_used_idle_task_to_zero(
    live_stack: Stack, stack_root: Path, mgmt: ManagementClient, small_tasks: list[TaskSpec]
) -> None:
    version = {s.model_name: (mgmt.describe(s.model_name) or [{}])[0]["modelVersion"] for s in small_tasks}
    # one small task's worker as the scaler counts it (resident, read on this host): 230-300 MB from run to run
    first = small_tasks[0].model_name
    mgmt.scale(first, version[first], 1)
    small_mb = worker_mb((mgmt.describe(first) or [{}])[0]["workers"][0]) or 300.0
    for spec in small_tasks:  # cold, as the idle period leaves them
        mgmt.scale(spec.model_name, version[spec.model_name], 0)
    held = held_by_workers(mgmt, mgmt.models())
    env = {  # room for what runs now and two small workers more, not three
        **PERIODS,
        "GATEWAY_SCALE_IDLE_S": "600",
        "GATEWAY_WORKER_MEMORY_ESTIMATE_MB": str(round(small_mb)),
        "GATEWAY_WORKER_MEMORY_BUDGET_MB": str(round(held + 2.5 * small_mb)),
    }
    with web.second_gateway(live_stack.cfg, env, state_dir=stack_root / "budget-gateway") as cfg:
        gateway = cfg.gateway_url
        wait_for(lambda: all(entry(gateway, s.task).get("scaling") for s in small_tasks), 60, "tasks routed")
        a, b, c = small_tasks
        answered(gateway, a.task)
        answered(gateway, b.task)
        assert (workers(mgmt, a.model_name), workers(mgmt, b.model_name)) == (1, 1)
        evictions = metric(gateway, "gateway_scale_events_total", a.model_name)
        answered(gateway, c.task)
        # a was used least recently: it made room for c
        assert (workers(mgmt, a.model_name), workers(mgmt, b.model_name), workers(mgmt, c.model_name)) == (0, 1, 1)
        assert metric(gateway, "gateway_scale_events_total", a.model_name) == evictions + 1
