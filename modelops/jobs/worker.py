"""The bulk job worker: `python -m modelops jobs worker` (the local stack and compose run one).

It looks for unfinished jobs in S3 (the layout: `contract.jobs`), claims one shard at a time with a
conditional create (or, once a dead worker's lease has expired, a conditional overwrite), classifies the
shard's rows through the gateway's batch-body route with the job's pinned version and bulk priority, writes
the shard's results once (If-None-Match), and checkpoints the job's status. Any number of workers can run:
S3's conditional writes are the only coordination. A worker killed mid-shard loses that shard's rows in flight;
its lease expires and another worker (or itself, restarted) redoes them, and the results still hold each row
exactly once, since a part is created only if absent.

A row the model cannot take (an empty text, a text over the limit, a photo that does not decode) gets its own
error line, as the gateway words it: a refused request body names the item, which leaves the body and is
answered with that error, and the rest goes again. Transient trouble (the gateway or TorchServe restarting, a
rate limit) is waited out with backoff.
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
import re
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
from botocore.exceptions import BotoCoreError, ClientError

from contract import jobs
from contract.jobs import JobSpec, JobState, JobStatus
from contract.logs import log_event
from contract.tables import TableError, read_rows
from modelops.store import StoreError
from modelops.store.s3 import ModelStore

logger = logging.getLogger(__name__)

LEASE_S = float(os.environ.get("JOB_LEASE_S", "120"))
TEXTS_PER_REQUEST = 32
BODIES_IN_FLIGHT = 6
SHARDS_IN_FLIGHT = 2
# how often a running job's cancel marker is looked for (each look is an S3 request, whose CPU the model needs)
CANCEL_CHECK_S = 2.0
IMAGES_PER_REQUEST = 8
RETENTION_SWEEP_S = 3600.0


class JobFailed(Exception):
    """The job cannot go on (its task is gone, its input unreadable): it fails with this reason."""


class Cancelled(Exception):
    """The caller cancelled the job while a shard was in flight."""


@dataclass
class Row:
    index: int
    row_id: str
    value: str


@dataclass(frozen=True)
class Slice:
    """The shards one index of a Kubernetes Indexed Job takes: those with `shard % count == index`, so `count`
    pods share a job's shards with no scheduler (each redoes its own after a restart, by the same leases)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"index {self.index} is not in 0..{self.count - 1}")

    def __contains__(self, shard: int) -> bool:
        return shard % self.count == self.index


@dataclass
class Settings:
    """Where the gateway is and how to call it; how long a claim lasts; how long results are kept."""

    gateway_url: str
    api_key: str | None = None
    lease_s: float = LEASE_S
    poll_s: float = 1.0
    retention_days: float = 7.0
    worker_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{random.randrange(1 << 16):04x}"
    )


class JobWorker:
    def __init__(self, store: ModelStore, settings: Settings, http: httpx.Client | None = None) -> None:
        self.store = store
        self.settings = settings
        headers = {"X-Priority": "bulk", **({"X-API-Key": settings.api_key} if settings.api_key else {})}
        self.http = http or httpx.Client(base_url=settings.gateway_url, timeout=120, headers=headers)
        self._inputs: dict[str, list[Row]] = {}
        self.slice: Slice | None = None
        self._last_sweep = 0.0
        # bodies in flight at once: enough to keep every TorchServe worker fed while the model is quiet (the
        # gateway's fair share decides how much of them goes upstream while interactive callers are there)
        self.pool = ThreadPoolExecutor(max_workers=BODIES_IN_FLIGHT, thread_name_prefix="job-body")

    # --- S3 ---------------------------------------------------------------------------------------------

    def _get(self, relative: str) -> tuple[bytes, str] | None:
        return self.store.get(relative)

    def _put(self, relative: str, body: bytes, **condition: str) -> bool:
        """Write; with `IfNoneMatch`/`IfMatch`, False when the condition failed (someone else won)."""
        try:
            self.store.s3.put_object(
                Bucket=self.store.location.bucket, Key=self.store.location.key(relative), Body=body, **condition
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict", "412"):
                return False
            raise
        return True

    def _delete(self, relative: str) -> None:
        self.store.call(
            f"deleting {relative}",
            self.store.s3.delete_object,
            Bucket=self.store.location.bucket,
            Key=self.store.location.key(relative),
        )

    def _list(self, relative: str) -> list[str]:
        return self.store.keys(relative)

    # --- the loop ---------------------------------------------------------------------------------------

    def run_forever(self, stop: threading.Event) -> None:
        log_event(logger, "jobs.worker_started", worker=self.settings.worker_id, gateway=self.settings.gateway_url)
        while not stop.is_set():
            try:
                busy = self.pass_once()
                self._sweep()
            except (ClientError, BotoCoreError, StoreError, OSError) as exc:
                log_event(logger, "jobs.store_unavailable", logging.WARNING, reason=str(exc))
                busy = False
            if not busy:
                stop.wait(self.settings.poll_s)

    def run_job(self, job: str, part: Slice, stop: threading.Event) -> None:
        """One index of an Indexed Job: this slice of one job's shards, then return (the job finishes with
        whichever index writes its last part). A job already finished or unknown returns at once."""
        self.slice = part
        log_event(logger, "jobs.index_started", job=job, index=part.index, of=part.count)
        while not stop.is_set():
            owner = next((k.split("/")[2] for k in self._list(f"{jobs.ROOT}/active/") if k.endswith(f"/{job}")), None)
            spec = self._spec(owner, job) if owner else None
            if spec is None:
                log_event(logger, "jobs.index_done", job=job, index=part.index, reason="the job is not active")
                return
            self._work_on(spec.owner, job)
            if all(shard in self._done(spec) for shard in range(spec.shards) if shard in part):
                log_event(logger, "jobs.index_done", job=job, index=part.index, reason="its shards are written")
                return
            stop.wait(self.settings.poll_s)  # a shard of ours still leased by an earlier try of this index

    def pass_once(self) -> bool:
        """One shard of the oldest unfinished job that has one free; True when some work was done."""
        active = sorted(self._list(f"{jobs.ROOT}/active/"), key=lambda key: key.rsplit("/", 1)[-1])
        for key in active:
            owner, job = key.split("/")[2:4]
            if self._work_on(owner, job):
                return True
        return False

    def _spec(self, owner: str, job: str) -> JobSpec | None:
        found = self._get(jobs.spec_key(owner, job))
        return JobSpec.model_validate_json(found[0]) if found else None

    def _work_on(self, owner: str, job: str) -> bool:
        spec = self._spec(owner, job)
        if spec is None:
            self._delete(jobs.active_key(owner, job))  # a marker left by a job deleted underneath
            return False
        if self._get(jobs.cancel_key(owner, job)) is not None:
            self._finish(spec, "cancelled")
            return True
        worked = False
        try:
            worked = self._run_shards(spec, self._rows(spec))
            if len(self._done(spec)) == spec.shards:
                self._finish(spec, "succeeded")
                return True
        except Cancelled:
            self._finish(spec, "cancelled")
            return True
        except JobFailed as exc:
            self._finish(spec, "failed", str(exc))
            return True
        return worked

    def _done(self, spec: JobSpec) -> set[int]:
        """The shards whose results are written."""
        parts = self._list(f"{jobs.job_prefix(spec.owner, spec.id)}/parts/")
        return {int(key.rsplit("/", 1)[-1].split(".")[0]) for key in parts}

    def _rows(self, spec: JobSpec) -> list[Row]:
        """The job's input rows (read once per worker and job)."""
        if spec.id not in self._inputs:
            found = self._get(spec.input_key)
            if found is None:
                raise JobFailed(f"the input file {spec.input_name} is gone from the job store")
            optional = (spec.id_column,) if spec.id_column else ()
            try:
                parsed = read_rows(found[0], spec.input_name, {spec.input_column: "input_column"}, optional)
                self._inputs[spec.id] = [
                    Row(i, row.cells.get(spec.id_column or "", "") or str(i + 1), row.cells[spec.input_column])
                    for i, row in enumerate(parsed)
                ]
            except TableError as exc:
                raise JobFailed(f"the input file cannot be read: {exc}") from None
        return self._inputs[spec.id]

    def _claim(self, spec: JobSpec, shard: int) -> bool:
        """A lease on the shard: created if there is none, taken over if the one there has expired."""
        key = jobs.claim_key(spec.owner, spec.id, shard)
        lease = json.dumps({"worker": self.settings.worker_id, "expires": time.time() + self.settings.lease_s}).encode()
        if self._put(key, lease, IfNoneMatch="*"):
            return True
        found = self._get(key)
        if found is None:
            return self._put(key, lease, IfNoneMatch="*")
        if json.loads(found[0]).get("expires", 0) > time.time():
            return False
        log_event(
            logger, "jobs.lease_taken_over", job=spec.id, shard=shard, previous=json.loads(found[0]).get("worker")
        )
        return self._put(key, lease, IfMatch=found[1])

    def _run_shards(self, spec: JobSpec, rows: list[Row]) -> bool:
        """The job's free shards, two in flight at a time: the next shard's requests go while the previous one's
        last answers arrive, so the model never waits on a shard boundary. True when a shard was done."""
        done = self._done(spec)
        free = (s for s in range(spec.shards) if s not in done and (self.slice is None or s in self.slice))
        running: deque[tuple[int, float, list[Future[list[dict[str, Any]]]]]] = deque()
        worked, checked = False, time.monotonic()
        try:
            while True:
                while len(running) < SHARDS_IN_FLIGHT and (shard := self._next_claimed(spec, free)) is not None:
                    running.append((shard, time.time(), self._start_shard(spec, shard, rows)))
                if not running:
                    return worked
                shard, started, futures = running.popleft()
                try:
                    self._end_shard(spec, shard, [line for future in futures for line in future.result()], started)
                finally:
                    self._delete(jobs.claim_key(spec.owner, spec.id, shard))
                worked = True
                if time.monotonic() - checked > CANCEL_CHECK_S:
                    checked = time.monotonic()
                    if self._get(jobs.cancel_key(spec.owner, spec.id)) is not None:
                        raise Cancelled
        finally:
            for shard, _, futures in running:  # a failure or a cancel: what is still in flight is dropped
                for future in futures:
                    future.cancel()
                self._delete(jobs.claim_key(spec.owner, spec.id, shard))

    def _next_claimed(self, spec: JobSpec, free: Iterator[int]) -> int | None:
        """The next free shard this worker managed to claim (others' workers take the ones they claimed)."""
        for shard in free:
            if self._claim(spec, shard):
                return shard
        return None

    def _start_shard(self, spec: JobSpec, shard: int, rows: list[Row]) -> list[Future[list[dict[str, Any]]]]:
        """The shard's requests, handed to the pool: bodies of texts, or the shard's photos in groups."""
        mine = [rows[i] for i in spec.shard_range(shard)]
        if spec.kind == "text":
            send = self._text_sender(spec)
            chunks = [mine[start : start + TEXTS_PER_REQUEST] for start in range(0, len(mine), TEXTS_PER_REQUEST)]
            return [self.pool.submit(self._answered, spec, chunk, send, "texts") for chunk in chunks]
        return [self.pool.submit(self._classify_images, spec, mine)]

    def _end_shard(self, spec: JobSpec, shard: int, lines: list[dict[str, Any]], started: float) -> None:
        body = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()
        if not self._put(jobs.part_key(spec.owner, spec.id, shard), body, IfNoneMatch="*"):
            log_event(logger, "jobs.part_already_written", job=spec.id, shard=shard)  # another worker redid it first
            return
        refused = Counter(line["error"]["code"] for line in lines if "error" in line)
        self._checkpoint(spec, len(lines), refused, started)
        log_event(
            logger,
            "jobs.shard_done",
            job=spec.id,
            shard=shard,
            rows=len(lines),
            refused=sum(refused.values()),
            seconds=round(time.time() - started, 2),
        )

    def _checkpoint(self, spec: JobSpec, rows: int, refused: Counter[str], started: float) -> None:
        """Add a shard to the status (read, change, conditional write; again when another worker won)."""
        key = jobs.status_key(spec.owner, spec.id)
        for _ in range(20):
            found = self._get(key)
            status = JobStatus.model_validate_json(found[0]) if found else JobStatus()
            if status.state in jobs.FINISHED:
                return
            status.state, status.rows_done = "running", status.rows_done + rows
            status.started = status.started or started
            status.updated = time.time()
            status.refused = dict(Counter(status.refused) + refused)
            condition = {"IfMatch": found[1]} if found else {"IfNoneMatch": "*"}
            if self._put(key, status.model_dump_json().encode(), **condition):
                return
            time.sleep(random.uniform(0.05, 0.3))

    def _finish(self, spec: JobSpec, state: JobState, reason: str | None = None) -> None:
        """Write the final status (for a success, counted again from every part), then drop the job's active
        marker, its pin and any claim left."""
        key = jobs.status_key(spec.owner, spec.id)
        found = self._get(key)
        status = JobStatus.model_validate_json(found[0]) if found else JobStatus()
        if status.state not in jobs.FINISHED:
            if state == "succeeded":
                refused: Counter[str] = Counter()
                rows = 0
                for shard in range(spec.shards):
                    part = self._get(jobs.part_key(spec.owner, spec.id, shard))
                    lines = [json.loads(line) for line in (part[0] if part else b"").splitlines() if line.strip()]
                    rows += len(lines)
                    refused.update(line["error"]["code"] for line in lines if "error" in line)
                status.rows_done, status.refused = rows, dict(refused)
            status.state, status.reason = state, reason
            status.finished = status.updated = time.time()
            status.started = status.started or status.finished
            self._put(key, status.model_dump_json().encode())
            log_event(logger, "jobs.finished", job=spec.id, state=state, rows=status.rows_done, reason=reason)
        for leftover in (jobs.active_key(spec.owner, spec.id), spec.pin):
            if leftover:
                self._delete(leftover)
        for claim in self._list(f"{jobs.job_prefix(spec.owner, spec.id)}/claims/"):
            self._delete(claim)
        self._inputs.pop(spec.id, None)

    # --- classifying through the gateway ------------------------------------------------------------------

    def _call(self, spec: JobSpec, send: Callable[[], httpx.Response]) -> httpx.Response:
        """One request, again after transient trouble (backoff up to 30 s), checking for a cancel meanwhile."""
        wait = 1.0
        while True:
            try:
                response = send()
            except httpx.TransportError as exc:
                reason = f"the gateway is not reachable ({type(exc).__name__})"
            else:
                reason = f"HTTP {response.status_code}"
                if response.status_code not in (429, 502, 503, 504):
                    return response
                wait = float(response.headers.get("Retry-After", wait))
            if self._get(jobs.cancel_key(spec.owner, spec.id)) is not None:
                raise Cancelled
            log_event(logger, "jobs.retry", logging.WARNING, job=spec.id, reason=reason, wait_s=wait)
            time.sleep(wait)
            wait = min(30.0, wait * 2)

    def _answered(
        self, spec: JobSpec, rows: list[Row], send: Callable[[list[Row]], httpx.Response], item: str
    ) -> list[dict[str, Any]]:
        """Answers for `rows` in one request or, when the gateway refuses an item (`texts.3`, `images[3]`), that
        item's error and the others again; a 413 splits the request."""
        lines: dict[int, dict[str, Any]] = {}
        pending = list(rows)
        while pending:
            response = self._call(spec, partial(send, list(pending)))
            if response.status_code == 200:
                body = response.json()
                results = body.get("results", [body])
                for row, answer in zip(pending, results, strict=True):
                    lines[row.index] = jobs.result_line(row.index, row.row_id, _answer(answer))
                break
            error, status = _error(response), response.status_code
            if status == 413 and len(pending) > 1:
                half = len(pending) // 2
                for part in (pending[:half], pending[half:]):
                    for line in self._answered(spec, part, send, item):
                        lines[line["row"] - 1] = line
                break
            if status == 404 and error.get("code") == "not_found":
                raise JobFailed(f"the task {spec.task} is no longer served")
            bad = _item_index(error, item, len(pending))
            if bad is None and len(pending) == 1 and status < 500:
                bad = 0
            if bad is None:
                raise JobFailed(f"the gateway answered HTTP {status} without naming a row: {error.get('message')}")
            row = pending.pop(bad)
            lines[row.index] = jobs.result_line(row.index, row.row_id, {"error": _row_error(error, item, bad)})
        return [lines[row.index] for row in rows]

    def _text_sender(self, spec: JobSpec) -> Callable[[list[Row]], httpx.Response]:
        headers = _headers(spec)

        def send(batch: list[Row]) -> httpx.Response:
            return self.http.post(f"/v1/{spec.task}", json={"texts": [r.value for r in batch]}, headers=headers)

        return send

    def _classify_images(self, spec: JobSpec, rows: list[Row]) -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = []
        for start in range(0, len(rows), IMAGES_PER_REQUEST):
            readable, photos = [], {}
            for row in rows[start : start + IMAGES_PER_REQUEST]:
                data = self._image(row.value)
                if data is None:
                    error = {"code": "image_not_found", "message": f"no image at {row.value}"}
                    lines.append(jobs.result_line(row.index, row.row_id, {"error": error}))
                else:
                    readable.append(row)
                    photos[row.index] = data

            if readable:
                lines += self._answered(spec, readable, self._photo_sender(spec, photos), "images")
        return sorted(lines, key=lambda line: int(line["row"]))

    def _photo_sender(self, spec: JobSpec, photos: dict[int, bytes]) -> Callable[[list[Row]], httpx.Response]:
        headers = _headers(spec)

        def send(batch: list[Row]) -> httpx.Response:
            files = [("images", (f"{r.index}.img", io.BytesIO(photos[r.index]))) for r in batch]
            return self.http.post(f"/v1/{spec.task}", files=files, params={"top_k": 5}, headers=headers)

        return send

    def _image(self, uri: str) -> bytes | None:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        try:
            return bytes(self.store.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except ClientError:
            return None

    # --- retention ----------------------------------------------------------------------------------------

    def _sweep(self) -> None:
        """Once an hour: delete finished jobs older than the retention period (results included), and what is
        left of a deleted job that was running (its cancel marker, and the status and parts its workers wrote
        before they saw it). A job being submitted is never taken for one: its spec is written before anything
        but its input."""
        if time.monotonic() - self._last_sweep < RETENTION_SWEEP_S:
            return
        self._last_sweep = time.monotonic()
        cutoff = time.time() - self.settings.retention_days * 86400
        by_job: dict[str, list[str]] = {}
        for key in self._list(f"{jobs.ROOT}/"):
            parts = key.split("/")
            if len(parts) > 3 and parts[1] not in ("active", "pins"):  # the indexes beside the jobs
                by_job.setdefault("/".join(parts[:3]), []).append(key)
        for prefix, keys in by_job.items():
            names = {key.removeprefix(f"{prefix}/") for key in keys}
            if "job.json" not in names:
                deleted = bool(names & {"cancel", "status.json"}) or any(n.startswith("parts/") for n in names)
                reason = "deleted" if deleted else None
            else:
                found = self._get(f"{prefix}/status.json") if "status.json" in names else None
                status = JobStatus.model_validate_json(found[0]) if found else None
                old = status is not None and status.state in jobs.FINISHED and (status.finished or 0) < cutoff
                reason = "expired" if old else None
            if reason:
                for key in keys:
                    self._delete(key)
                log_event(logger, "jobs.swept", prefix=prefix, reason=reason)


def _headers(spec: JobSpec) -> dict[str, str]:
    """The job's pinned version (when its upstream names versions) and its id, on every request."""
    return {"X-Request-ID": f"job-{spec.id}", **({"X-Model-Version": spec.version} if spec.version else {})}


def _answer(answer: dict[str, Any]) -> dict[str, Any]:
    """The part of a gateway answer a result line keeps: the label, its score and all scores (or top labels),
    and the model version that answered (the job's pinned one)."""
    keep = ("label", "score", "scores", "top_k")
    return {**{k: answer[k] for k in keep if k in answer}, "version": answer.get("model", {}).get("version")}


def _error(response: httpx.Response) -> dict[str, Any]:
    try:
        error = response.json().get("error") or {}
    except ValueError:
        error = {}
    return error if isinstance(error, dict) else {}


def _item_index(error: dict[str, Any], item: str, count: int) -> int | None:
    """Which item of the request the gateway's error is about (`texts.3`, `images[3]`), if it says."""
    for text in [error.get("message", ""), *[d.get("field", "") for d in error.get("details") or []]]:
        found = re.search(rf"{item}(?:\.|\[)(\d+)", str(text))
        if found and int(found.group(1)) < count:
            return int(found.group(1))
    return None


def _row_error(error: dict[str, Any], item: str, index: int) -> dict[str, str]:
    """The gateway's error about this row alone: its code, and what it says of this item (a validation error
    lists each refused item under `details`), without the request's item name."""
    named = re.compile(rf"^{item}(?:\.{index}|\[{index}\])$")
    detail = next((d for d in error.get("details") or [] if named.match(str(d.get("field", "")))), None)
    message = str(detail["message"] if detail else error.get("message", ""))
    message = re.sub(rf"^{item}(?:\.|\[)\d+\]?:\s*", "", message)
    return {"code": str(error.get("code", "invalid_row")), "message": message}
