"""Bulk jobs on the real stack: a second gateway (small shards, API keys) in front of the shared TorchServe, job
workers as their own processes, S3 the shared SeaweedFS. Submit, progress, results, cancel; a malformed file
refused at submission; bad rows answered per row; another key's job invisible; two workers; the version pinned
across a rollout; and each of the gateway, a worker, a TorchServe worker and the TorchServe JVM killed mid-job,
after which every row is in the results exactly once, answered as the synchronous route answers it."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from contract import jobs
from modelops.jobs.worker import JobWorker
from modelops.jobs.worker import Settings as JobSettings
from modelops.local import services, web
from modelops.local.config import StackConfig
from modelops.local.s3 import default_s3_env
from modelops.train.data import data_dir
from tests.conftest import TEST_BUCKET, Stack
from tests.integration.test_lifecycle import new_version

pytestmark = pytest.mark.integration

KEYS = {"alice": secrets.token_urlsafe(16), "bob": secrets.token_urlsafe(16)}
SHARD_ROWS = 64


def _tweets(count: int, bad: dict[int, str] | None = None) -> list[tuple[str, str]]:
    """`count` real tweets (repeated as needed) as (id, text) rows; `bad` puts texts the route refuses at rows."""
    with (data_dir() / "disaster" / "tweets.csv").open(encoding="utf-8", newline="") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)]
    rows = [(f"t{i}", texts[i % len(texts)]) for i in range(count)]
    for index, text in (bad or {}).items():
        rows[index] = (rows[index][0], text)
    return rows


def _csv(rows: list[tuple[str, str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows([("tweet_id", "tweet"), *rows])
    return out.getvalue().encode()


INPUTS = f"s3://{TEST_BUCKET}/ci/inputs/"
JOBS_GATEWAY_ENV = {
    "GATEWAY_API_KEYS": ",".join(f"{name}:{key}" for name, key in KEYS.items()),
    "GATEWAY_JOBS_INPUT_PREFIX": INPUTS,
    "GATEWAY_JOB_SHARD_ROWS": str(SHARD_ROWS),
    "GATEWAY_JOB_MAX_ROWS": "20000",
}


@pytest.fixture(scope="module")
def jobs_gateway(live_stack: Stack, stack_root: Path) -> Iterator[StackConfig]:
    with web.second_gateway(live_stack.cfg, JOBS_GATEWAY_ENV, state_dir=stack_root / "jobs-gateway") as cfg:
        yield cfg


class Workers:
    """Job worker processes for the jobs gateway, each with its own state folder (pid file, log)."""

    def __init__(self, gateway: StackConfig, root: Path) -> None:
        self.gateway, self.root, self.started = gateway, root, 0

    def start(self, lease_s: float = 8.0) -> StackConfig:
        self.started += 1
        cfg = StackConfig(state_dir=self.root / f"worker-{self.started}", gateway_port=self.gateway.gateway_port)
        env = {"JOB_WORKER_API_KEY": KEYS["alice"], "JOB_LEASE_S": str(lease_s)}
        services.start(cfg, web.jobs_worker(cfg, env))
        return cfg

    def log(self, cfg: StackConfig) -> str:
        return (cfg.log_dir / "jobs.log").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def workers(jobs_gateway: StackConfig, stack_root: Path) -> Iterator[Workers]:
    running = Workers(jobs_gateway, stack_root / "job-workers")
    yield running
    for n in range(1, running.started + 1):
        services.stop(StackConfig(state_dir=running.root / f"worker-{n}"), "jobs")


@pytest.fixture(scope="module")
def worker(workers: Workers) -> StackConfig:
    return workers.start()


def _client(gateway: StackConfig, who: str = "alice") -> httpx.Client:
    return httpx.Client(base_url=gateway.gateway_url, timeout=60, headers={"X-API-Key": KEYS[who]})


def _submit(http: httpx.Client, rows: list[tuple[str, str]], task: str = "disaster") -> str:
    files = {"file": ("tweets.csv", _csv(rows), "text/csv")}
    data = {"task": task, "input_column": "tweet", "id_column": "tweet_id"}
    response = http.post("/v1/jobs", files=files, data=data)
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/v1/jobs/{response.json()['id']}"
    return str(response.json()["id"])


def _wait(
    http: httpx.Client, job: str, until: Callable[[dict[str, Any]], bool], timeout_s: float = 300
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        view = http.get(f"/v1/jobs/{job}").json()
        if until(view):
            return dict(view)
        time.sleep(0.3)
    raise AssertionError(f"job {job} never got there: {http.get(f'/v1/jobs/{job}').json()}")


def _finished(view: dict[str, Any]) -> bool:
    return view["state"] in jobs.FINISHED


def _results(http: httpx.Client, job: str) -> list[dict[str, Any]]:
    response = http.get(f"/v1/jobs/{job}/results")
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def _exactly_once(lines: list[dict[str, Any]], rows: list[tuple[str, str]]) -> None:
    assert [line["row"] for line in lines] == list(range(1, len(rows) + 1))
    assert [line["id"] for line in lines] == [row_id for row_id, _ in rows]


def _same_as_sync(
    http: httpx.Client, lines: list[dict[str, Any]], rows: list[tuple[str, str]], sample: int = 24
) -> None:
    """The job's answers equal what the synchronous route answers for the same texts."""
    picked = [i for i in range(0, len(rows), max(1, len(rows) // sample)) if "error" not in lines[i]][:sample]
    answer = http.post("/v1/disaster", json={"texts": [rows[i][1] for i in picked]}).json()["results"]
    for i, synchronous in zip(picked, answer, strict=True):
        assert (lines[i]["label"], lines[i]["scores"]) == (synchronous["label"], synchronous["scores"]), i


def test_an_indexed_job_splits_the_shards_by_index(live_stack: Stack, jobs_gateway: StackConfig) -> None:
    """Two indexes of a Kubernetes Indexed Job (`--job ID --of 2`, the index from JOB_COMPLETION_INDEX), and no
    other worker: each writes only its own shards and exits; the job finishes with every row once. (First in
    this module, before any long-running worker exists to take shards.)"""
    rows = _tweets(6 * SHARD_ROWS - 10)
    with _client(jobs_gateway) as http:
        job = _submit(http, rows)
        env = {
            **os.environ,
            **default_s3_env(live_stack.cfg),
            "JOB_GATEWAY_URL": jobs_gateway.gateway_url,
            "JOB_WORKER_API_KEY": KEYS["alice"],
        }
        command = [sys.executable, "-m", "modelops", "jobs", "worker", "--job", job, "--of", "2"]
        indexes = [
            subprocess.Popen(command, env={**env, "JOB_COMPLETION_INDEX": str(i)}, stderr=subprocess.PIPE, text=True)
            for i in range(2)
        ]
        logs = [index.communicate(timeout=300)[1] for index in indexes]
        assert [index.returncode for index in indexes] == [0, 0], logs
        view = http.get(f"/v1/jobs/{job}").json()
        assert view["state"] == "succeeded", view
        _exactly_once(_results(http, job), rows)
    for i, log in enumerate(logs):
        shards = {json.loads(line)["shard"] for line in log.splitlines() if '"jobs.shard_done"' in line}
        assert shards == {s for s in range(6) if s % 2 == i}, (i, log)


def test_a_job_runs_with_bad_rows_answered_per_row(jobs_gateway: StackConfig, worker: StackConfig) -> None:
    rows = _tweets(300, bad={3: "", 70: "x" * 2001, 200: "line\x07bell"})
    with _client(jobs_gateway) as http:
        job = _submit(http, rows)
        queued = http.get(f"/v1/jobs/{job}").json()
        assert queued["rows"]["total"] == 300
        assert http.get(f"/v1/jobs/{job}/results").status_code == 409
        view = _wait(http, job, _finished)
        assert view["state"] == "succeeded", view
        assert view["rows"] == {"total": 300, "done": 300, "refused": 3}
        assert view["refused"] == {"validation_error": 3}
        stamps = [view["created"], view["started"], view["finished"]]
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp) for stamp in stamps), stamps
        assert stamps == sorted(stamps)
        lines = _results(http, job)
        _exactly_once(lines, rows)
        assert lines[3]["error"] == {"code": "validation_error", "message": "String should have at least 1 character"}
        assert lines[70]["error"]["message"] == "String should have at most 2000 characters"
        assert "control character U+0007" in lines[200]["error"]["message"]
        assert {line["version"] for line in lines if "error" not in line} == {view["model"]["version"]}
        _same_as_sync(http, lines, rows)
        as_csv = http.get(f"/v1/jobs/{job}/results", headers={"Accept": "text/csv"})
        table = list(csv.DictReader(io.StringIO(as_csv.text)))
        assert as_csv.headers["content-type"].startswith("text/csv")
        assert [r["id"] for r in table] == [row_id for row_id, _ in rows]
        assert table[70]["error_code"] == "validation_error"
        assert http.get("/v1/jobs").json()["jobs"][0]["id"] == job


def test_progress_is_reported_and_a_job_can_be_cancelled(jobs_gateway: StackConfig, worker: StackConfig) -> None:
    with _client(jobs_gateway) as http:
        job = _submit(http, _tweets(12000))
        running = _wait(http, job, lambda v: v["state"] == "running" and v["rows"]["done"] >= 2 * SHARD_ROWS)
        assert running["rows_per_s"] > 0
        assert running["eta_s"] > 0
        cancelled = http.post(f"/v1/jobs/{job}/cancel")
        assert cancelled.status_code == 202
        assert cancelled.json()["state"] == "cancelled"
        time.sleep(3)
        done_then = http.get(f"/v1/jobs/{job}").json()
        time.sleep(3)
        later = http.get(f"/v1/jobs/{job}").json()
        assert later["state"] == "cancelled"
        assert later["rows"]["done"] == done_then["rows"]["done"] < 12000  # the workers stopped
        assert http.get(f"/v1/jobs/{job}/results").json()["error"]["code"] == "job_not_finished"


def test_a_deleted_job_is_gone_with_its_input_and_results(
    live_stack: Stack, jobs_gateway: StackConfig, worker: StackConfig
) -> None:
    with _client(jobs_gateway) as http:
        finished = _submit(http, _tweets(40))
        _wait(http, finished, lambda v: v["state"] == "succeeded")
        running = _submit(http, _tweets(6000))
        _wait(http, running, lambda v: v["state"] == "running")
        for job in (finished, running):  # a job still running is cancelled first
            deleted = http.delete(f"/v1/jobs/{job}")
            assert deleted.status_code == 204, deleted.text
            assert http.get(f"/v1/jobs/{job}").status_code == 404
            assert http.get(f"/v1/jobs/{job}/results").status_code == 404
            assert http.delete(f"/v1/jobs/{job}").status_code == 404
            assert job not in [j["id"] for j in http.get("/v1/jobs").json()["jobs"]]
        assert live_stack.store.keys(f"{jobs.job_prefix('alice', finished)}/") == []
        # the worker running a shard of the other sees the cancel marker the delete kept, and stops
        left = f"{jobs.job_prefix('alice', running)}/status.json"
        deadline = time.monotonic() + 60
        while left not in live_stack.store.keys(left):
            assert time.monotonic() < deadline, "the worker did not stop"
            time.sleep(0.5)
        # what any worker does once an hour: what was written after the delete goes too (a shard that was in
        # flight when the worker stopped may land a moment later, for the next sweep)
        sweeper = JobWorker(live_stack.store, JobSettings(gateway_url=jobs_gateway.gateway_url))
        deadline = time.monotonic() + 30
        while live_stack.store.keys(f"{jobs.job_prefix('alice', running)}/"):
            assert time.monotonic() < deadline, live_stack.store.keys(f"{jobs.job_prefix('alice', running)}/")
            sweeper._last_sweep = 0.0
            sweeper._sweep()
            time.sleep(2)
        assert not [key for key in live_stack.store.keys(f"{jobs.ROOT}/active/") if running in key]
        assert finished not in str(live_stack.store.keys(f"{jobs.ROOT}/"))


@pytest.mark.parametrize(
    ("name", "content", "status", "message"),
    [
        ("tweets.jsonl", b'{"tweet": "ok"}\n{"tweet": "broken}\n', 422, "line 2: not valid JSON"),
        ("tweets.csv", b"tweet\n", 422, "holds no rows"),
        ("tweets.csv", b"text,other\nhello,1\n", 422, "no column for input_column 'tweet'"),
        ("tweets.xlsx", b"PK", 415, "is not CSV"),
        ("tweets.csv", b"tweet\n" + b"hello\n" * 20001, 413, "more than 20000 rows"),
    ],
)
def test_a_bad_file_is_refused_at_submission_with_its_line(
    jobs_gateway: StackConfig, name: str, content: bytes, status: int, message: str
) -> None:
    with _client(jobs_gateway) as http:
        response = http.post(
            "/v1/jobs", files={"file": (name, content)}, data={"task": "disaster", "input_column": "tweet"}
        )
    assert response.status_code == status, response.text
    assert message in response.json()["error"]["message"]


def test_another_keys_job_is_invisible(jobs_gateway: StackConfig, worker: StackConfig) -> None:
    with _client(jobs_gateway, "alice") as alice, _client(jobs_gateway, "bob") as bob:
        job = _submit(alice, _tweets(10))
        assert bob.get(f"/v1/jobs/{job}").status_code == 404
        assert bob.delete(f"/v1/jobs/{job}").status_code == 404
        assert bob.get(f"/v1/jobs/{job}/results").status_code == 404
        assert job not in [j["id"] for j in bob.get("/v1/jobs").json()["jobs"]]
        assert alice.get(f"/v1/jobs/{job}").status_code == 200
        assert httpx.get(f"{jobs_gateway.gateway_url}/v1/jobs/{job}").status_code == 401


def test_two_workers_share_a_job_without_doing_a_row_twice(
    jobs_gateway: StackConfig, worker: StackConfig, workers: Workers
) -> None:
    second = workers.start()
    rows = _tweets(3000)
    with _client(jobs_gateway) as http:
        job = _submit(http, rows)
        view = _wait(http, job, _finished)
        assert view["state"] == "succeeded"
        _exactly_once(_results(http, job), rows)
    shards = [workers.log(cfg).count(f'"jobs.shard_done", "job": "{job}"') for cfg in (worker, second)]
    assert all(shards), shards  # both took part
    services.stop(second, "jobs")


def _mid_job(http: httpx.Client, rows: list[tuple[str, str]], trouble: Callable[[], None]) -> None:
    """Submit, let a few shards finish, cause the trouble, then check the job finished with every row once,
    answered as the synchronous route answers."""
    job = _submit(http, rows)
    _wait(http, job, lambda v: v["rows"]["done"] >= 3 * SHARD_ROWS)
    trouble()
    view = _wait(http, job, _finished, timeout_s=600)
    assert view["state"] == "succeeded", view
    lines = _results(http, job)
    _exactly_once(lines, rows)
    _same_as_sync(http, lines, rows)


def test_a_killed_gateway_costs_no_row(live_stack: Stack, jobs_gateway: StackConfig, worker: StackConfig) -> None:
    def restart_gateway() -> None:
        pid = services.running_pid(jobs_gateway, "gateway")
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        time.sleep(2)
        services.start(jobs_gateway, web.gateway(jobs_gateway, {**web.gateway_env(live_stack.cfg), **JOBS_GATEWAY_ENV}))

    with _client(jobs_gateway) as http:
        _mid_job(http, _tweets(4000), restart_gateway)


def test_a_killed_worker_costs_only_its_shard(jobs_gateway: StackConfig, workers: Workers) -> None:
    first = workers.start(lease_s=5)

    def kill_worker() -> None:
        pid = services.running_pid(first, "jobs")
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        workers.start(lease_s=5)

    with _client(jobs_gateway) as http:
        _mid_job(http, _tweets(4000), kill_worker)


def test_a_killed_torchserve_worker_and_jvm_cost_no_row(
    live_stack: Stack, jobs_gateway: StackConfig, worker: StackConfig
) -> None:
    def kill_a_model_worker() -> None:
        described = httpx.get(
            f"{live_stack.cfg.management_url}/models/disaster",
            headers={"Authorization": f"Bearer {json.loads(live_stack.cfg.key_file.read_text())['management']['key']}"},
        ).json()
        os.kill(int(described[0]["workers"][0]["pid"]), signal.SIGKILL)

    def kill_the_jvm() -> None:
        pid = services.running_pid(live_stack.cfg, "torchserve")
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)
        time.sleep(2)
        live_stack.ensure_torchserve()  # what `make run` does: start it again, then sync

    with _client(jobs_gateway) as http:
        _mid_job(http, _tweets(4000), kill_a_model_worker)
        _mid_job(http, _tweets(4000), kill_the_jvm)


def test_the_version_is_pinned_across_a_rollout(
    live_stack: Stack, jobs_gateway: StackConfig, worker: StackConfig
) -> None:
    before = live_stack.store.read_manifest().models["disaster"].default
    rows = _tweets(6000)
    with _client(jobs_gateway) as http:
        job = _submit(http, rows)
        _wait(http, job, lambda v: v["rows"]["done"] >= 2 * SHARD_ROWS)
        published = live_stack.store.publish(new_version(live_stack, "disaster", "jobs"))
        try:
            assert published["version"] != before
            outcomes = live_stack.sync()  # the rollout: the new version becomes the default
            assert outcomes["disaster"] == "switched"
            answered_now = http.post("/v1/disaster", json={"text": "storm"}).json()["model"]["version"]
            assert answered_now == published["version"]
            view = _wait(http, job, _finished, timeout_s=600)
            assert view["state"] == "succeeded"
            lines = _results(http, job)
            _exactly_once(lines, rows)
            assert {line["version"] for line in lines} == {before} == {view["model"]["version"]}
        finally:
            live_stack.store.set_default("disaster", before)  # leave the stack as the other tests expect it
            live_stack.sync()


def test_a_photo_job_reads_its_file_and_photos_from_the_input_prefix(
    live_stack: Stack, jobs_gateway: StackConfig, worker: StackConfig
) -> None:
    """An image task's job names its file and its photos by s3:// URI under GATEWAY_JOBS_INPUT_PREFIX; a photo
    that is missing or not an image is that row's error; the others are answered as the synchronous route
    answers them. A URI outside the prefix is refused at submission."""
    s3, bucket = live_stack.store.s3, TEST_BUCKET
    photos = sorted((data_dir() / "pose" / "running").glob("*.jpg"))[:10]
    rows = [(f"p{i}", f"{INPUTS}photos/{photo.name}") for i, photo in enumerate(photos)]
    for photo in photos:
        s3.put_object(Bucket=bucket, Key=f"ci/inputs/photos/{photo.name}", Body=photo.read_bytes())
    s3.put_object(Bucket=bucket, Key="ci/inputs/photos/notes.jpg", Body=b"not a photo")
    rows[3] = ("missing", f"{INPUTS}photos/nowhere.jpg")
    rows[6] = ("notes", f"{INPUTS}photos/notes.jpg")
    table = "image,photo_id\n" + "".join(f"{uri},{row_id}\n" for row_id, uri in rows)
    s3.put_object(Bucket=bucket, Key="ci/inputs/photos.csv", Body=table.encode())
    submission = {"task": "pose", "input_column": "image", "id_column": "photo_id"}
    with _client(jobs_gateway) as http:
        outside = http.post("/v1/jobs", json={**submission, "input_uri": f"s3://{bucket}/ci/jobs/photos.csv"})
        assert outside.status_code == 422
        assert f"an s3:// URI under {INPUTS}" in outside.json()["error"]["message"]
        missing = http.post("/v1/jobs", json={**submission, "input_uri": f"{INPUTS}nowhere.csv"})
        assert (missing.status_code, missing.json()["error"]["code"]) == (404, "input_not_found")
        response = http.post("/v1/jobs", json={**submission, "input_uri": f"{INPUTS}photos.csv"})
        assert response.status_code == 202, response.text
        view = _wait(http, response.json()["id"], _finished)
        assert view["state"] == "succeeded", view
        assert view["refused"] == {"image_not_found": 1, "unsupported_media_type": 1}
        lines = _results(http, view["id"])
        assert [line["id"] for line in lines] == [row_id for row_id, _ in rows]
        assert lines[3]["error"]["code"] == "image_not_found"
        assert lines[6]["error"]["code"] == "unsupported_media_type"
        for i in (0, 9):
            files = {"image": (photos[i].name, photos[i].read_bytes())}
            synchronous = http.post("/v1/pose", files=files, params={"top_k": 5}).json()
            assert (lines[i]["label"], lines[i]["score"]) == (synchronous["label"], synchronous["score"]), i
