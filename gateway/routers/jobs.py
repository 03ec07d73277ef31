"""Bulk jobs: classify a whole file, durably, without starving interactive callers.

`POST /v1/jobs` takes a task and a CSV or JSON Lines file (a multipart upload, or the `s3://` URI of one inside
the configured input prefix, never an address a caller chooses), checks it whole (a malformed file is refused
with its line), pins the version the task serves now, and stores the job in S3 (`gateway.jobstore`); the job
workers (`python -m modelops jobs worker`) do the rest and checkpoint there. A caller sees and touches only its
own jobs (its API key's, when keys are on): another's id is a 404, like an unknown one.
"""

from __future__ import annotations

import csv
import io
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from contract import jobs
from contract.catalog import TaskSpec
from contract.jobs import JobSpec
from contract.tables import TABLE_SUFFIXES, TableError, read_rows, suffix_of
from gateway.apikeys import ApiKey
from gateway.bodies import is_json
from gateway.dependencies import AppSettings, Catalog, Client, Jobs
from gateway.errors import APIError
from gateway.jobstore import Job, JobStore, StoreUnavailable
from gateway.observe import KEY_SCOPE
from gateway.responses import OrjsonResponse
from gateway.schemas.error_docs import GUARD_ERRORS, job_errors
from gateway.schemas.requests import JobSubmission
from gateway.schemas.responses import JobList, JobView
from gateway.settings import Settings

router = APIRouter(tags=["jobs"], responses=GUARD_ERRORS)
JSONL, CSV = "application/x-ndjson", "text/csv"


def _owner(request: Request, task: str | None = None) -> str:
    """The caller's owner name; with `task`, also refuses a key not granted it (as the task's own routes do)."""
    key: ApiKey | None = request.scope.get(KEY_SCOPE)
    if key is not None and task is not None and not key.allows(task):
        raise APIError(403, "forbidden", f"the API key '{key.name}' is not granted the task '{task}'")
    return jobs.owner_of(key.name if key else None)


def _unavailable(exc: StoreUnavailable, settings: Settings) -> APIError:
    return APIError(503, "jobs_unavailable", f"bulk jobs need the job store: {exc}", retry_after=settings.retry_after_s)


def view(job: Job) -> dict[str, Any]:
    """What a caller sees of a job (`JobView`)."""
    spec, status = job.spec, job.status
    state = "cancelled" if job.cancelled and status.state not in jobs.FINISHED else status.state
    rate = eta = None
    if status.started and status.updated and status.updated > status.started and status.rows_done:
        rate = round(status.rows_done / (status.updated - status.started), 1)
        if state == "running":
            eta = round((spec.rows - status.rows_done) / rate, 1)
    return {
        "id": spec.id,
        "task": spec.task,
        "state": state,
        "rows": {"total": spec.rows, "done": status.rows_done, "refused": sum(status.refused.values())},
        "refused": status.refused,
        "rows_per_s": rate,
        "eta_s": eta,
        "model": {"name": spec.model, "version": spec.version},
        "input": spec.input_name,
        "created": spec.created,
        "started": _stamp(status.started) if status.started else None,
        "finished": _stamp(status.finished) if status.finished else None,
        "reason": status.reason,
        "results": f"/v1/jobs/{spec.id}/results" if state == "succeeded" else None,
    }


def _stamp(seconds: float) -> str:
    """A clock reading as a UTC ISO 8601 timestamp: `created`, `started` and `finished` share one format."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


async def _job(store: JobStore, request: Request, job_id: str, settings: Settings) -> Job:
    if not jobs.valid_job_id(job_id):
        raise APIError(404, "job_not_found", f"no job '{job_id}'")
    try:
        job = await store.job(_owner(request), job_id)
    except StoreUnavailable as exc:
        raise _unavailable(exc, settings) from None
    if job is None:
        raise APIError(404, "job_not_found", f"no job '{job_id}'")
    return job


async def _form(request: Request) -> tuple[JobSubmission, str, bytes | None]:
    """The submission and the input file's name and bytes (None: the file is in S3, at `input_uri`)."""
    if is_json(request):
        submission = _validated(JobSubmission.model_validate_json, await request.body())
        if not submission.input_uri:
            raise APIError(422, "validation_error", "input_uri: a JSON submission names its file by s3:// URI")
        return submission, submission.input_uri.rsplit("/", 1)[-1], None
    try:
        form = await request.form(max_files=1, max_fields=8)
    except HTTPException as exc:
        raise APIError(422, "invalid_multipart", f"the multipart body could not be read: {exc.detail}") from None
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise APIError(422, "validation_error", "file: send the CSV or JSON Lines file as the multipart field 'file'")
    fields = {k: v for k, v in form.items() if k != "file" and isinstance(v, str)}
    unknown = sorted(set(form.keys()) - {"file", *JobSubmission.model_fields})
    if unknown:
        raise APIError(422, "validation_error", f"unknown form field(s) {', '.join(unknown)}")
    return _validated(JobSubmission.model_validate, fields), upload.filename or "input.csv", await upload.read()


def _validated(parse: Callable[[Any], JobSubmission], body: Any) -> JobSubmission:
    """The submission, or the validation error a route's own body model would give (422 naming each field): the
    body is parsed here, not by FastAPI, because it is JSON or a multipart form."""
    try:
        return parse(body)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


def _check_file(data: bytes, name: str, spec: TaskSpec, submission: JobSubmission, settings: Settings) -> int:
    """Rows in the file, once it is known to be readable whole, with its columns, within the limits."""
    if suffix_of(name) not in TABLE_SUFFIXES:
        raise APIError(415, "unsupported_media_type", f"file: {name!r} is not CSV (.csv, .tsv) or JSON Lines (.jsonl)")
    column = submission.input_column or jobs.INPUT_COLUMN_DEFAULTS[spec.kind]
    optional = (submission.id_column,) if submission.id_column else ()
    rows = 0
    try:
        for row in read_rows(data, name, {column: "input_column"}, optional):
            rows += 1
            if rows > settings.job_max_rows:
                raise APIError(
                    413, "job_too_large", f"file: more than {settings.job_max_rows} rows; split it into several jobs"
                )
            if (check := ROW_CHECKS[spec.kind]) is not None:
                check(row.cells[column], row.where, settings)
    except TableError as exc:
        raise APIError(422, "invalid_job_file", f"file: {exc}") from None
    if rows == 0:
        raise APIError(422, "invalid_job_file", f"file: {name} holds no rows")
    return rows


def _check_image_location(location: str, where: str, settings: Settings) -> None:
    prefix = settings.jobs_input_prefix
    if not prefix or not location.startswith(prefix) or ".." in location:
        allowed = f"s3:// URIs under {prefix}" if prefix else "none: no GATEWAY_JOBS_INPUT_PREFIX is configured"
        raise APIError(
            422, "invalid_job_file", f"file, {where}: image location {location!r} is not allowed ({allowed})"
        )


# What each kind of task checks of every row at submission (besides the file being readable whole).
ROW_CHECKS: dict[str, Callable[[str, str, Settings], None] | None] = {"text": None, "image": _check_image_location}


@router.post(
    "/v1/jobs",
    summary="Classify a whole CSV or JSON Lines file, in the background",
    status_code=202,
    response_model=JobView,
    responses=job_errors(404, 413, 415, 422, 429, 503),
)
async def submit_job(
    request: Request, client: Client, catalog: Catalog, store: Jobs, settings: AppSettings
) -> OrjsonResponse:
    """The job is accepted (202) once its file is read whole and stored; `Location` is its status. Rows the model
    cannot take (an empty text, a text over the limit) do not fail the job: each gets its own error in the
    results."""
    submission, name, data = await _form(request)
    spec = catalog.get(submission.task)
    if spec is None:
        raise APIError(422, "unknown_task", f"task: no task '{submission.task}'; the tasks are {', '.join(catalog)}")
    owner = _owner(request, spec.task)
    try:
        if data is None:
            data = await _read_input(store, submission.input_uri or "", settings)
        if len(data) > settings.job_max_bytes:
            raise APIError(413, "job_too_large", f"file: {len(data)} bytes; the limit is {settings.job_max_bytes}")
        rows = await run_in_threadpool(_check_file, data, name, spec, submission, settings)
        if await store.active(owner) >= settings.job_max_active:
            raise APIError(
                429,
                "too_many_jobs",
                f"{settings.job_max_active} jobs are still running for you; wait for one to finish",
                retry_after=settings.retry_after_s,
            )
        version = await _serving_version(client, spec.model_name, settings)
        job_id = f"{int(time.time() * 1000):012x}{secrets.token_hex(4)}"
        job = JobSpec(
            id=job_id,
            owner=owner,
            task=spec.task,
            model=spec.model_name,
            version=version,
            kind=spec.kind,
            input_key=f"{jobs.job_prefix(owner, job_id)}/input{suffix_of(name)}",
            input_name=name,
            input_column=submission.input_column or jobs.INPUT_COLUMN_DEFAULTS[spec.kind],
            id_column=submission.id_column,
            rows=rows,
            shard_rows=settings.job_shard_rows,
            created=_stamp(time.time()),
        )
        await store.submit(job, data)
    except StoreUnavailable as exc:
        raise _unavailable(exc, settings) from None
    headers = {"Location": f"/v1/jobs/{job_id}"}
    return OrjsonResponse(view(Job(job, jobs.JobStatus(), False)), status_code=202, headers=headers)


async def _read_input(store: JobStore, uri: str, settings: Settings) -> bytes:
    prefix = settings.jobs_input_prefix
    if not prefix or not uri.startswith(prefix) or ".." in uri:
        allowed = f"an s3:// URI under {prefix}" if prefix else "none: GATEWAY_JOBS_INPUT_PREFIX is not configured"
        raise APIError(422, "validation_error", f"input_uri: {uri!r} is not allowed ({allowed}); or upload the file")
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    data = await store.read_object(bucket, key)
    if data is None:
        raise APIError(404, "input_not_found", f"input_uri: no object at {uri}")
    return data


def document_submission(document: dict[str, Any], tasks: Iterable[str], settings: Settings) -> None:
    """Put the submission body into the OpenAPI document as this gateway accepts it now: its tasks change while
    it runs, and a JSON body exists only with a jobs input prefix."""
    body = JobSubmission.openapi_request_body(list(tasks), settings.jobs_input_prefix)
    document["paths"]["/v1/jobs"]["post"]["requestBody"] = body


async def _serving_version(client: Any, model: str, settings: Settings) -> str | None:
    """The version the model's TorchServes serve now: the one the job is pinned to. None when the model is
    ready on an upstream that cannot name versions (no management API, as a KServe predictor)."""
    ready = [loaded for status in await client.status([model]) if (loaded := (status.models or {}).get(model))]
    for loaded in ready:
        if loaded.version:
            return loaded.version
    if any(loaded.ready for loaded in ready):
        return None
    raise APIError(
        503,
        "model_not_ready",
        f"model '{model}' is not served now; try again shortly",
        retry_after=settings.retry_after_s,
    )


@router.get("/v1/jobs", summary="Your jobs, newest first", response_model=JobList)
async def list_jobs(
    request: Request,
    store: Jobs,
    settings: AppSettings,
    limit: Annotated[int, Query(ge=1, le=100, description="how many jobs, newest first")] = 20,
) -> OrjsonResponse:
    try:
        found = await store.jobs(_owner(request), limit)
    except StoreUnavailable as exc:
        raise _unavailable(exc, settings) from None
    return OrjsonResponse({"jobs": [view(job) for job in found]})


@router.get(
    "/v1/jobs/{job_id}", summary="A job's state and progress", response_model=JobView, responses=job_errors(404)
)
async def job_status(job_id: str, request: Request, store: Jobs, settings: AppSettings) -> OrjsonResponse:
    return OrjsonResponse(view(await _job(store, request, job_id, settings)))


@router.post(
    "/v1/jobs/{job_id}/cancel",
    summary="Cancel a job",
    status_code=202,
    response_model=JobView,
    responses=job_errors(404, 503),
)
async def cancel_job(job_id: str, request: Request, store: Jobs, settings: AppSettings) -> OrjsonResponse:
    """The workers stop at their next shard; the job stays listed as `cancelled` until deleted. A job already
    finished stays as it is."""
    job = await _job(store, request, job_id, settings)
    if job.status.state not in jobs.FINISHED and not job.cancelled:
        try:
            await store.cancel(job)
        except StoreUnavailable as exc:
            raise _unavailable(exc, settings) from None
        job = Job(job.spec, job.status, True)
    return OrjsonResponse(view(job), status_code=202)


@router.delete(
    "/v1/jobs/{job_id}",
    summary="Delete a job and its results",
    status_code=204,
    response_class=Response,
    responses=job_errors(404, 503),
)
async def delete_job(job_id: str, request: Request, store: Jobs, settings: AppSettings) -> Response:
    """The job, its input and its results are removed (a job still running is cancelled first); its id is a
    404 from then on."""
    job = await _job(store, request, job_id, settings)
    try:
        await store.delete(job)
    except StoreUnavailable as exc:
        raise _unavailable(exc, settings) from None
    return Response(status_code=204)


@router.get(
    "/v1/jobs/{job_id}/results",
    summary="A finished job's results: one line per input row, in input order",
    responses={
        200: {"content": {JSONL: {}, CSV: {}}, "description": "JSON Lines (the default) or CSV, by `Accept`"},
        **job_errors(404, 409),
    },
)
async def job_results(job_id: str, request: Request, store: Jobs, settings: AppSettings) -> StreamingResponse:
    """Each line: `row` (1-based), `id` (the id column's, else the row number), and `label`, `score`, `scores`
    (or `top_k` for photos) and the model `version` that answered, or the row's own `error` (`code`,
    `message`)."""
    job = await _job(store, request, job_id, settings)
    state = view(job)["state"]
    if state != "succeeded":
        raise APIError(409, "job_not_finished", f"job '{job_id}' is {state}; results come when it has succeeded")
    as_csv = CSV in request.headers.get("accept", "")
    parts = store.results(job.spec)
    body = _csv(parts) if as_csv else parts
    name = f"{job.spec.task}-{job_id}.{'csv' if as_csv else 'jsonl'}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    return StreamingResponse(body, media_type=CSV if as_csv else JSONL, headers=headers)


CSV_COLUMNS = ("row", "id", "label", "score", "scores", "version", "error_code", "error_message")


async def _csv(parts: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The JSON Lines parts as CSV: scores (or a photo's top labels) as JSON in one cell."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    yield out.getvalue().encode()
    async for part in parts:
        out.seek(0)
        out.truncate()
        for line in part.splitlines():
            if line.strip():
                item = orjson.loads(line)
                error = item.get("error") or {}
                scores = item.get("scores") or {i["label"]: i["score"] for i in item.get("top_k", [])} or None
                writer.writerow(
                    [
                        item["row"],
                        item["id"],
                        item.get("label", ""),
                        item.get("score", ""),
                        orjson.dumps(scores).decode() if scores else "",
                        item.get("version", ""),
                        error.get("code", ""),
                        error.get("message", ""),
                    ]
                )
        yield out.getvalue().encode()
