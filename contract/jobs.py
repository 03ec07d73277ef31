"""Bulk jobs: what the gateway (the job API) and the job workers agree on, all of it kept in S3.

Under `s3://$MODEL_BUCKET/$MODEL_PREFIX/jobs/`:

    <owner>/<job>/job.json            JobSpec: written once, at submission; the model version is pinned there
    <owner>/<job>/input<.csv|.jsonl>  the caller's file, as it came
    <owner>/<job>/status.json         JobStatus: the workers' checkpoint (conditional writes)
    <owner>/<job>/cancel              present once the caller cancelled
    <owner>/<job>/claims/<shard>      a worker's lease on a shard (created with If-None-Match, taken over when expired)
    <owner>/<job>/parts/<shard>.jsonl the shard's results, one line per input row, written once (If-None-Match)
    active/<owner>/<job>              a job not finished yet: what the workers look for
    pins/<model>/<version>/<job>      a version a running job needs: each host's sync keeps it registered

A shard is `shard_rows` consecutive rows; a part holds exactly its shard's rows, in order, so the results are
the parts concatenated, every row exactly once whoever wrote them: a part is created only if absent, and a
worker that redid a shard after another's lease expired finds it there and drops its own.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
JOB_ID_PATTERN = r"^[a-z0-9]{20}$"
ROOT = "jobs"
# the input column a job reads when the caller names none, by the task's kind: the text itself, or where the
# image is
INPUT_COLUMN_DEFAULTS = {"text": "text", "image": "image"}
# an owner is a key's name (letters, digits, `._-`) or `anonymous` when the gateway has no keys
ANONYMOUS = "anonymous"
_OWNER = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class JobSpec(BaseModel):
    """What to classify, with what: written by the gateway when the job is submitted."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=JOB_ID_PATTERN)
    owner: str
    task: str
    model: str
    version: str | None = Field(
        description="the model version pinned for the whole job; None where the upstream cannot say which versions "
        "it serves (a KServe predictor serves one at a time: a rollout there changes it mid-job, and each result "
        "line names the version that answered it)"
    )
    kind: Literal["text", "image"]
    input_key: str = Field(description="the input file's key under the store prefix")
    input_name: str
    input_column: str
    id_column: str | None = None
    rows: int = Field(ge=1)
    shard_rows: int = Field(ge=1)
    created: str

    @property
    def shards(self) -> int:
        return -(-self.rows // self.shard_rows)

    @property
    def pin(self) -> str | None:
        """The key that keeps the pinned version registered while the job runs (none when nothing is pinned)."""
        return pin_key(self.model, self.version, self.id) if self.version else None

    def shard_range(self, shard: int) -> range:
        """The 0-based row indices of a shard."""
        return range(shard * self.shard_rows, min(self.rows, (shard + 1) * self.shard_rows))


class JobStatus(BaseModel):
    """The workers' checkpoint: how far the job is. `refused` counts the rows answered with an error, by code."""

    model_config = ConfigDict(extra="forbid")

    state: JobState = "queued"
    rows_done: int = 0
    refused: dict[str, int] = Field(default_factory=dict)
    started: float | None = None
    updated: float | None = None
    finished: float | None = None
    reason: str | None = None


def valid_job_id(job: str) -> bool:
    return re.fullmatch(JOB_ID_PATTERN, job) is not None


def owner_of(key_name: str | None) -> str:
    """The owner recorded for a caller: its API key's name, or `anonymous` when the gateway has no keys."""
    if key_name is None:
        return ANONYMOUS
    if not _OWNER.fullmatch(key_name):
        raise ValueError(f"key name {key_name!r} cannot name a job owner")
    return key_name


def job_prefix(owner: str, job: str) -> str:
    return f"{ROOT}/{owner}/{job}"


def spec_key(owner: str, job: str) -> str:
    return f"{job_prefix(owner, job)}/job.json"


def status_key(owner: str, job: str) -> str:
    return f"{job_prefix(owner, job)}/status.json"


def cancel_key(owner: str, job: str) -> str:
    return f"{job_prefix(owner, job)}/cancel"


def claim_key(owner: str, job: str, shard: int) -> str:
    return f"{job_prefix(owner, job)}/claims/{shard:06d}"


def part_key(owner: str, job: str, shard: int) -> str:
    return f"{job_prefix(owner, job)}/parts/{shard:06d}.jsonl"


def active_key(owner: str, job: str) -> str:
    return f"{ROOT}/active/{owner}/{job}"


def pin_key(model: str, version: str, job: str) -> str:
    return f"{ROOT}/pins/{model}/{version}/{job}"


def pins_prefix(model: str) -> str:
    return f"{ROOT}/pins/{model}/"


def result_line(row: int, row_id: str | None, answer: dict[str, Any]) -> dict[str, Any]:
    """One input row's line in a part: its 1-based number, its id (the id column's, else the number) and the
    answer (`label`, `score`, `scores` or a photo's `top_k`, and the `version` that answered) or its own `error`
    (`code`, `message`)."""
    return {"row": row + 1, "id": row_id if row_id else str(row + 1), **answer}
