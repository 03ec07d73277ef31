"""The error answers as the OpenAPI document shows them: the envelope `gateway.errors` writes, and per route
which statuses it may answer and why, so a client sees every failure it must handle."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    field: str = Field(description="dotted path of the offending field (`body` for the document itself)")
    message: str


class ErrorBody(BaseModel):
    code: str = Field(description="stable, machine-readable reason, e.g. `validation_error`, `model_not_ready`")
    message: str = Field(description="for people: names the field and the limit where there is one")
    details: list[ErrorDetail] | None = Field(default=None, description="one entry per validation problem")
    limit_bytes: int | None = Field(default=None, description="the body limit, on 413 `payload_too_large`")


class ErrorResponse(BaseModel):
    error: ErrorBody


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "model": ErrorResponse}


# Answers any route may give before it runs (the guard and the request limits), documented on every route.
GUARD_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _error("API keys are configured and the request has none, or an invalid one"),
    403: _error("the API key is not granted this task"),
    429: _error("the API key's rate limit is exceeded (Retry-After set)"),
    431: _error("too many request headers, or too large"),
}
PREDICT_ERRORS: dict[int | str, dict[str, Any]] = {
    **GUARD_ERRORS,
    413: _error("request body or image too large"),
    415: _error("wrong Content-Type, or not a supported image format"),
    422: _error("invalid input; the message names the field and the limit"),
    502: _error("TorchServe answered something unexpected"),
    503: _error(
        "TorchServe down, the model not ready, its worker still starting from zero (`model_starting`) or no room "
        "for one in the memory budget (`capacity_full`) (Retry-After set)"
    ),
    504: _error("TorchServe did not answer in time"),
}
EXPLAIN_ERRORS: dict[int | str, dict[str, Any]] = {
    **PREDICT_ERRORS,
    429: _error(
        "the API key's rate limit is exceeded, or (`explain_busy`) the model's explanation slots are all taken "
        "(Retry-After set either way)"
    ),
    501: _error("`explain_unsupported`: the serving version's archive was built before explanations"),
}


_JOB_ERRORS = {
    404: "no such job of yours; or (`input_not_found`) no object at the JSON body's `input_uri`",
    409: "the job has not succeeded (yet): no results",
    413: "the file is over the byte or row limit",
    415: "the file is not CSV or JSON Lines",
    422: "a malformed file (its line named), a missing column, an unknown task or form field",
    429: "too many of your jobs are unfinished (Retry-After set)",
    503: "the job store (S3) or the task's model is not available now (Retry-After set)",
}


def job_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: _error(_JOB_ERRORS[status]) for status in statuses}
