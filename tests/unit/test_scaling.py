"""The scaler's rules (`gateway.scaling.policy`) on made-up loads, and the scaler itself against a fake
TorchServe whose management API counts the scale calls (the real thing: tests/integration/test_scaling.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson
import pytest

from contract.catalog import CatalogError, TaskSpec, parse_task_document, task_document
from gateway.errors import APIError
from gateway.metrics import GatewayMetrics
from gateway.scaling import policy
from gateway.scaling.policy import Rules, TaskLoad
from gateway.scaling.traffic import parse_counts
from gateway.settings import Settings, UpstreamSettings
from gateway.torchserve.descriptions import Described, SavedDescriptions
from gateway.upstream import TorchServeClient
from modelops.serve.sync import starting_workers
from modelops.tasks.spec import new_task_spec

RULES = Rules(idle_s=60, budget_mb=1000, up_after_s=2, down_after_s=10)


def _load(model: str, workers: int = 1, last_used: float = 0.0, in_flight: int = 0, fewest: int = 0) -> TaskLoad:
    return TaskLoad(
        model, fewest, 1, 2, 4, worker_mb=250, workers=workers, ready=workers, in_flight=in_flight, last_used=last_used
    )


def test_a_task_whose_workers_still_start_is_neither_scaled_down_nor_made_room_from() -> None:
    """A sync registering a version with two workers, or TorchServe restarting one: stopping one mid-start would
    fail the registration (TorchServe answers 500 'Failed to start workers')."""
    registering = TaskLoad("builtin", fewest=1, warm=2, most=2, batch_size=4, worker_mb=250, workers=2, ready=1)
    assert [policy.under_load(registering, RULES, now=t) for t in (0, 20, 40)] == [0, 0, 0]
    idle_but_starting = _load("added")
    idle_but_starting.ready = 0
    assert policy.idle([idle_but_starting], RULES, now=1000) == []
    full = [_load(f"busy{i}", in_flight=1) for i in range(3)]
    assert policy.room_for([*full, idle_but_starting, _load("wanted", workers=0)], RULES, "wanted", 1) is None


def test_only_tasks_allowed_to_idle_with_nothing_in_flight_for_the_idle_period_go_to_zero() -> None:
    loads = [
        _load("old"),
        _load("recent", last_used=50),
        _load("busy", in_flight=1),
        _load("kept", fewest=1),
        _load("cold", workers=0),
    ]
    assert policy.idle(loads, RULES, now=100) == ["old"]


def test_room_is_made_from_the_least_recently_used_idle_tasks_only_as_far_as_needed() -> None:
    loads = [
        _load("newer", last_used=30),
        _load("oldest", last_used=10),
        _load("older", last_used=20),
        _load("busy", last_used=0, in_flight=2),
        _load("wanted", workers=0),
    ]
    # 4 x 250 MB held: a fifth worker needs 250 MB freed, the oldest idle one
    assert policy.room_for(loads, RULES, "wanted", 1) == ["oldest"]
    assert policy.room_for([_load("wanted", workers=0)], RULES, "wanted", 1) == []


def test_no_room_when_every_other_worker_is_busy_or_kept_warm() -> None:
    loads = [_load("busy", in_flight=1), _load("kept", fewest=1), _load("x", in_flight=3), _load("y", fewest=1)]
    assert policy.room_for([*loads, _load("wanted", workers=0)], RULES, "wanted", 1) is None


def test_a_queue_that_stays_deep_gets_one_more_worker_and_a_shallow_one_gives_it_back() -> None:
    load = _load("t", in_flight=9)  # 1 worker x batch 4: deep from 4
    assert policy.under_load(load, RULES, now=0) == 0
    assert policy.under_load(load, RULES, now=1) == 0
    assert policy.under_load(load, RULES, now=2.5) == 1
    load.workers = load.ready = 2
    load.in_flight = 30
    assert policy.under_load(load, RULES, now=10) == 0  # at max_workers already
    load.in_flight = 3  # would fill one worker fewer again: kept
    assert [policy.under_load(load, RULES, now=t) for t in (20, 40)] == [0, 0]
    load.in_flight = 2  # half of one worker fewer
    assert policy.under_load(load, RULES, now=20) == 0
    assert policy.under_load(load, RULES, now=31) == -1
    load.workers = 1
    load.in_flight = 0
    assert policy.under_load(load, RULES, now=70) == 0  # never below one: zero is the idle rule's


def test_a_task_started_with_two_workers_keeps_its_min_workers_once_quiet() -> None:
    """A built-in: `workers` 2 to take the first burst, `min_workers` 1 held once its traffic is quiet."""
    load = TaskLoad("builtin", fewest=1, warm=2, most=2, batch_size=4, worker_mb=250, workers=2, ready=2, in_flight=2)
    assert policy.under_load(load, RULES, now=0) == 0
    assert policy.under_load(load, RULES, now=10.5) == -1
    load.workers = 1
    assert policy.under_load(load, RULES, now=30) == 0
    assert policy.idle([load], RULES, now=1000) == []  # kept warm


@pytest.mark.parametrize("callers", [4, 8])
def test_steady_callers_filling_a_one_worker_task_get_it_a_second_and_keep_it(callers: int) -> None:
    """A quiet built-in (one worker, batch 4) under 4 or 8 callers: every slot taken, a second worker, and no
    flapping back while they keep calling (they would fill one worker fewer again)."""
    load = TaskLoad(
        "builtin", fewest=1, warm=2, most=2, batch_size=4, worker_mb=250, workers=1, ready=1, in_flight=callers
    )
    assert policy.under_load(load, RULES, now=0) == 0
    assert policy.under_load(load, RULES, now=2.5) == 1
    load.workers = load.ready = 2
    assert [policy.under_load(load, RULES, now=t) for t in (10, 20, 40, 60)] == [0, 0, 0, 0]


def test_calls_held_while_a_cold_task_starts_do_not_count_as_a_deep_queue() -> None:
    """Eight callers wake a cold task: they wait for its one worker however long it takes to start, and only a
    queue that stays deep once it is ready earns the second."""
    load = _load("t", in_flight=8)
    load.ready = 0
    assert [policy.under_load(load, RULES, now=t) for t in (0, 2.5, 5)] == [0, 0, 0]
    load.ready, load.in_flight = 1, 0  # the worker drained them within the window
    assert policy.under_load(load, RULES, now=5.5) == 0
    load.in_flight = 8
    assert policy.under_load(load, RULES, now=6) == 0
    assert policy.under_load(load, RULES, now=8.5) == 1


def test_a_queue_that_dips_restarts_the_clock() -> None:
    load = _load("t", in_flight=9)
    policy.under_load(load, RULES, now=0)
    load.in_flight = 1
    policy.under_load(load, RULES, now=1)
    load.in_flight = 9
    assert policy.under_load(load, RULES, now=2.5) == 0


def test_torchserve_request_counts_are_summed_per_model() -> None:
    page = (
        "# TYPE ts_inference_requests_total counter\n"
        'ts_inference_requests_total{model_name="a",model_version="default",hostname="h"} 3.0\n'
        'ts_inference_requests_total{model_name="a",model_version="2",hostname="h"} 2.0\n'
        'ts_inference_requests_total{model_name="b",model_version="default",hostname="h"} 1.0\n'
        # TorchServe 0.12 writes a comma after the last label
        'ts_inference_requests_total{model_name="b",model_version="20261207.185347",hostname="vm",} 2.0\n'
    )
    assert parse_counts(page) == {"a": 5.0, "b": 3.0}


# --- the scaler against a fake TorchServe --------------------------------------------------------------


def _spec(name: str, catalog: dict[str, TaskSpec]) -> TaskSpec:
    document = task_document(catalog["sentiment"]) | {"task": name, "model_name": name}
    return parse_task_document(document | {"workers": 1, "min_workers": 0, "max_workers": 2})


class FakeTorchServe:
    """One TorchServe: models registered with some workers; a prediction of a model with none gets its 503; a
    synchronous scale call takes `start_s` to start workers."""

    def __init__(self, workers: dict[str, int], start_s: float = 0.05) -> None:
        self.workers = workers
        self.start_s = start_s
        self.scale_calls: list[tuple[str, int]] = []
        self.requests: dict[str, int] = {}  # TorchServe's inference request count, other gateways' calls included

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        parts = request.url.path.split("/")
        if request.url.port == 8082:
            return httpx.Response(200, text="".join(_count_line(m, n) for m, n in self.requests.items()))
        if request.url.port == 8081 and request.url.path == "/models":
            listed = [{"modelName": m, "modelUrl": f"{m}.mar"} for m in self.workers]
            return httpx.Response(200, json={"models": listed})
        model = parts[2]
        if request.url.port == 8081 and request.method == "PUT":
            wanted = int(request.url.params["min_worker"])
            self.scale_calls.append((model, wanted))
            await asyncio.sleep(self.start_s)
            self.workers[model] = wanted
            return httpx.Response(200, json={"status": "scaled"})
        if request.url.port == 8081 and request.url.path == "/models":
            return httpx.Response(
                200, json={"models": [{"modelName": m, "modelUrl": f"{m}.mar"} for m in self.workers]}
            )
        if request.url.port == 8081:
            workers = [{"status": "READY", "memoryUsage": 250 * 2**20}] * self.workers[model]
            return httpx.Response(200, json=[{"modelVersion": "1", "workers": workers}])
        if self.workers.get(model, 0) == 0:
            message = f'Model "{model}" has no worker to serve inference request. Please use scale workers API.'
            return httpx.Response(503, json={"code": 503, "type": "ServiceUnavailableException", "message": message})
        self.requests[model] = self.requests.get(model, 0) + 1
        return httpx.Response(200, json={"label": "positive"})


def _count_line(model: str, count: int) -> str:
    return f'ts_inference_requests_total{{model_name="{model}",model_version="1",hostname="h",}} {count}.0\n'


def _client(fake: FakeTorchServe, specs: dict[str, TaskSpec], **settings: object) -> TorchServeClient:
    upstream = UpstreamSettings(
        name="ts", inference_url="http://ts:8080", management_url="http://ts:8081", metrics_url="http://ts:8082"
    )
    config = Settings(upstreams=[upstream], worker_memory_budget_mb=1100, **settings)  # type: ignore[arg-type]
    return TorchServeClient(config, GatewayMetrics(), httpx.MockTransport(fake), lambda: specs)


def test_concurrent_calls_to_a_cold_task_start_one_worker_and_all_get_answers(
    catalog: dict[str, TaskSpec],
) -> None:
    specs = {"cold": _spec("cold", catalog)}
    fake = FakeTorchServe({"cold": 0})
    client = _client(fake, specs)

    async def run() -> list[dict]:
        await client.scaler.refresh()
        answers = await asyncio.gather(*(client.predict("cold", b'{"text": "x"}') for _ in range(10)))
        return [answer for answer, _ in answers]

    assert asyncio.run(run()) == [{"label": "positive"}] * 10
    assert fake.scale_calls == [("cold", 1)]


def test_a_call_that_waits_past_the_bound_gets_503_model_starting_and_the_start_goes_on(
    catalog: dict[str, TaskSpec],
) -> None:
    fake = FakeTorchServe({"slow": 0}, start_s=0.5)
    client = _client(fake, {"slow": _spec("slow", catalog)}, scale_start_wait_s=0.1)

    async def run() -> tuple[APIError, int]:
        await client.scaler.refresh()
        with pytest.raises(APIError) as refused:
            await client.predict("slow", b'{"text": "x"}')
        await asyncio.sleep(0.6)
        return refused.value, fake.workers["slow"]

    error, workers_after = asyncio.run(run())
    assert (error.status, error.code, error.retry_after) == (503, "model_starting", 5)
    assert workers_after == 1


def test_a_start_past_the_budget_evicts_the_least_recently_used_idle_task_or_says_capacity_full(
    catalog: dict[str, TaskSpec],
) -> None:
    names = ("first", "second", "third", "fourth", "new")
    specs = {name: _spec(name, catalog) for name in names}
    fake = FakeTorchServe({"first": 1, "second": 1, "third": 1, "fourth": 1, "new": 0})
    client = _client(fake, specs)  # 1100 MB: four measured 250 MB workers, not a fifth estimated at 300 MB

    async def run() -> APIError:
        await client.scaler.refresh()
        for name in ("second", "first", "third", "fourth"):  # "second" used least recently
            await client.predict(name, b'{"text": "x"}')
        await client.predict("new", b'{"text": "x"}')
        assert fake.workers == {"first": 1, "second": 0, "third": 1, "fourth": 1, "new": 1}
        for name in ("first", "third", "fourth", "new"):
            client.scaler.load(name).in_flight = 1  # all busy now
        with pytest.raises(APIError) as refused:
            await client.predict("second", b'{"text": "x"}')
        return refused.value

    error = asyncio.run(run())
    assert (error.status, error.code) == (503, "capacity_full")
    assert "budget" in error.message


def test_the_owner_keeps_a_second_worker_while_other_gateways_call_and_gives_it_back_after(
    catalog: dict[str, TaskSpec],
) -> None:
    """The owner cannot see another gateway's queue, only TorchServe's request count growing beyond its own."""
    spec = parse_task_document(task_document(catalog["sentiment"]) | {"workers": 2, "min_workers": 1})
    fake = FakeTorchServe({"sentiment": 2})
    client = _client(fake, {"sentiment": spec}, scale_down_after_s=0.3)

    async def run() -> list[int]:
        seen = []
        await client.scaler.tick()
        for _ in range(8):  # 0.8 s of calls through another gateway, none through this one
            fake.requests["sentiment"] = fake.requests.get("sentiment", 0) + 5
            await asyncio.sleep(0.1)
            await client.scaler.tick()
        seen.append(fake.workers["sentiment"])
        await client.predict("sentiment", b'{"text": "x"}')  # its own calls are its own to judge
        for _ in range(6):  # then quiet
            await asyncio.sleep(0.1)
            await client.scaler.tick()
        seen.append(fake.workers["sentiment"])
        return seen

    assert asyncio.run(run()) == [2, 1]
    assert fake.scale_calls == [("sentiment", 1)]


def test_a_gateway_started_again_routes_a_cold_task_from_its_saved_description_without_starting_it(
    catalog: dict[str, TaskSpec], tmp_path: Path
) -> None:
    spec = _spec("cold", catalog)
    saved = Described("1", {"task": "cold"}, orjson.dumps(task_document(spec)).decode())
    SavedDescriptions(tmp_path).put("cold", saved)
    fake = FakeTorchServe({"cold": 0})
    client = _client(fake, {"cold": spec}, descriptions_dir=tmp_path)
    assert asyncio.run(client.described("cold")) == saved
    assert fake.scale_calls == []
    assert SavedDescriptions(tmp_path).get("cold", "2") is None  # another version is described again
    (tmp_path / "cold@1.json").write_text("{torn")
    assert SavedDescriptions(tmp_path).get("cold", "1") is None


# --- the worker ranges the build writes and the sync registers with ------------------------------------


def test_a_built_in_keeps_one_worker_and_an_added_task_may_go_to_zero(
    catalog: dict[str, TaskSpec], tmp_path: Path
) -> None:
    assert all(spec.worker_range == (1, spec.workers) for spec in catalog.values())
    added = new_task_spec("tickets", "text", ["a", "b"], tmp_path / "t.csv")
    assert (added.worker_range, added.workers) == ((0, 2), 1)
    warm = new_task_spec("tickets", "text", ["a", "b"], tmp_path / "t.csv", min_workers=3)
    assert (warm.worker_range, warm.workers) == ((3, 3), 3)


def test_a_range_that_excludes_its_own_workers_is_refused(catalog: dict[str, TaskSpec]) -> None:
    document = task_document(catalog["sentiment"]) | {"min_workers": 3}
    with pytest.raises(CatalogError, match=r"min_workers \(3\) <= workers \(2\)"):
        parse_task_document(document)


def test_the_sync_registers_a_cold_task_cold_and_a_new_version_as_warm_as_the_one_it_replaces(
    catalog: dict[str, TaskSpec],
) -> None:
    cold = _spec("cold", catalog)
    assert starting_workers(cold, None) == 0
    assert starting_workers(cold, {"workers": []}) == 0
    assert starting_workers(cold, {"workers": [{}, {}]}) == 2
    assert starting_workers(catalog["sentiment"], None) == 2
    assert starting_workers(catalog["sentiment"], {"workers": []}) == 1  # its min_workers
    assert starting_workers(catalog["sentiment"], {"workers": [{}, {}]}) == 2
