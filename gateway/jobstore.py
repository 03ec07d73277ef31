"""The gateway's side of bulk jobs in S3 (the layout: `contract.jobs`): submit, read, list, cancel, results.

The gateway writes a job once (its input, its spec with the model version pinned, its first status, the pin,
then the active marker the workers look for) and afterwards only reads what the workers checkpoint, plus a
cancel marker. S3 is spoken through MinIO's small SDK (urllib3; no botocore, which would more than double the
gateway's image), configured from the same standard AWS variables as everything else (`AWS_ENDPOINT_URL`,
`AWS_ACCESS_KEY_ID`, ..., or an instance role); its blocking calls run in the thread pool.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from contract import jobs
from contract.jobs import JobSpec, JobStatus


class StoreUnavailable(Exception):
    """S3 could not be asked (not configured, unreachable, or refusing our credentials)."""


@dataclass(frozen=True)
class Job:
    spec: JobSpec
    status: JobStatus
    cancelled: bool


def _client() -> Any:
    from minio import Minio
    from minio.credentials import AWSConfigProvider, ChainedProvider, EnvAWSProvider, IamAwsProvider

    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"
    if endpoint:
        parts = urlsplit(endpoint)
        host, secure = parts.netloc, parts.scheme == "https"
    else:
        host, secure = f"s3.{region}.amazonaws.com", True
    credentials = ChainedProvider([EnvAWSProvider(), AWSConfigProvider(), IamAwsProvider()])
    return Minio(host, credentials=credentials, secure=secure, region=region)


class JobStore:
    """One S3 location (`MODEL_BUCKET`, `MODEL_PREFIX`, as the model store), the jobs under it."""

    def __init__(self, client: Any | None = None) -> None:
        self.bucket = os.environ.get("MODEL_BUCKET", "models")
        self.prefix = os.environ.get("MODEL_PREFIX", "multitask").strip("/")
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = _client()
        return self._client

    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def relative(self, key: str) -> str:
        return key.removeprefix(f"{self.prefix}/") if self.prefix else key

    # --- blocking calls (run in the thread pool) ---------------------------------------------------------

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from minio.error import MinioException, S3Error
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, **kwargs)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                raise KeyError(what) from None
            raise StoreUnavailable(f"S3 refused {what}: {exc.code} {exc.message}") from None
        except (MinioException, HTTPError, OSError, ValueError) as exc:
            raise StoreUnavailable(f"S3 unreachable during {what}: {type(exc).__name__}: {exc}") from None

    def _put(self, relative: str, body: bytes, content_type: str = "application/json") -> None:
        key = self.key(relative)
        self._call(
            f"writing {relative}", self.client.put_object, self.bucket, key, io.BytesIO(body), len(body), content_type
        )

    def _get(self, relative: str) -> bytes | None:
        return self._read_object(self.bucket, self.key(relative))

    def _list(self, relative: str, recursive: bool = True) -> list[str]:
        objects = self._call(
            f"listing {relative}", lambda: list(self.client.list_objects(self.bucket, self.key(relative), recursive))
        )
        return [self.relative(o.object_name) for o in objects]

    def _remove(self, relative: str) -> None:
        self._call(f"deleting {relative}", self.client.remove_object, self.bucket, self.key(relative))

    def _submit(self, spec: JobSpec, data: bytes | None) -> None:
        if data is not None:
            self._put(spec.input_key, data, "application/octet-stream")
        self._put(jobs.spec_key(spec.owner, spec.id), spec.model_dump_json().encode())
        self._put(jobs.status_key(spec.owner, spec.id), JobStatus().model_dump_json().encode())
        if spec.pin:
            self._put(spec.pin, b"")
        self._put(jobs.active_key(spec.owner, spec.id), b"")  # last: the workers take it from here

    def _job(self, owner: str, job: str) -> Job | None:
        raw = self._get(jobs.spec_key(owner, job))
        if raw is None:
            return None
        status = self._get(jobs.status_key(owner, job))
        cancelled = self._get(jobs.cancel_key(owner, job)) is not None
        return Job(
            JobSpec.model_validate_json(raw),
            JobStatus.model_validate_json(status) if status else JobStatus(),
            cancelled,
        )

    def _owned(self, owner: str) -> list[str]:
        """The owner's job ids, newest first (ids begin with their creation time)."""
        names = {name.split("/")[2] for name in self._list(f"{jobs.ROOT}/{owner}/") if name.endswith("/job.json")}
        return sorted(names, reverse=True)

    def _cancel(self, job: Job) -> None:
        spec = job.spec
        self._put(jobs.cancel_key(spec.owner, spec.id), b"")
        self._remove(jobs.active_key(spec.owner, spec.id))
        if spec.pin:
            self._remove(spec.pin)

    def _delete(self, job: Job) -> None:
        """The job and everything under it, its spec first: from then on it is not found, even if a step after
        fails. A job still running is cancelled first and its cancel marker kept, so a worker in the middle of a
        shard sees it and stops; what that worker writes then, the workers' sweep removes with the marker."""
        spec = job.spec
        running = job.status.state not in jobs.FINISHED
        if running:
            self._cancel(job)
        self._remove(jobs.spec_key(spec.owner, spec.id))
        marker = jobs.cancel_key(spec.owner, spec.id)
        for name in self._list(f"{jobs.job_prefix(spec.owner, spec.id)}/"):
            if not (running and name == marker):
                self._remove(name)

    def _parts(self, spec: JobSpec) -> Iterator[bytes]:
        for shard in range(spec.shards):
            data = self._get(jobs.part_key(spec.owner, spec.id, shard))
            if data is None:
                raise StoreUnavailable(f"the results of rows {spec.shard_range(shard)} are missing")
            yield data

    # --- the async face the routes use ---------------------------------------------------------------------

    async def submit(self, spec: JobSpec, data: bytes | None) -> None:
        await run_in_threadpool(self._submit, spec, data)

    async def job(self, owner: str, job: str) -> Job | None:
        return await run_in_threadpool(self._job, owner, job)

    async def jobs(self, owner: str, limit: int) -> list[Job]:
        ids = await run_in_threadpool(self._owned, owner)
        found = [await self.job(owner, job) for job in ids[:limit]]
        return [job for job in found if job is not None]

    async def active(self, owner: str) -> int:
        """How many of the owner's jobs are not finished."""
        return len(await run_in_threadpool(self._list, f"{jobs.ROOT}/active/{owner}/"))

    async def cancel(self, job: Job) -> None:
        await run_in_threadpool(self._cancel, job)

    async def delete(self, job: Job) -> None:
        await run_in_threadpool(self._delete, job)

    def _read_object(self, bucket: str, key: str) -> bytes | None:
        try:
            response = self._call(f"reading s3://{bucket}/{key}", self.client.get_object, bucket, key)
        except KeyError:
            return None
        try:
            data: bytes = response.read()
            return data
        finally:
            response.close()
            response.release_conn()

    async def read_object(self, bucket: str, key: str) -> bytes | None:
        """Any object (a job's input named by its s3:// URI, inside the prefix the routes allow)."""
        return await run_in_threadpool(self._read_object, bucket, key)

    def results(self, spec: JobSpec) -> AsyncIterator[bytes]:
        """The parts in shard order: every row's line once, in input order."""
        return iterate_in_threadpool(self._parts(spec))


def parse_lines(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
