"""Schema-driven fuzzing of the live gateway with Schemathesis: every operation of its OpenAPI document gets
a few hundred generated requests, valid and invalid (wrong types, missing and extra fields, boundary lengths,
odd unicode, wrong content types), against the real TorchServe behind it.

Checked on every answer: no 5xx, the status code is one the schema documents, the body matches the schema
for that status, the content type is the documented one, and invalid requests are refused with a 4xx. For
the text routes, requests the schema calls valid must be answered 2xx (the schema says exactly what is
accepted); an image the schema calls valid can still be no image at all, so the pose routes are spared that one.
A summary of what was sent and answered is written to `test-artifacts/fuzz-summary.json`. (Schemathesis's own
pytest integration does not run under pytest 9, so each operation is driven through Hypothesis here.)
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation import GenerationMode

from contract.catalog import REPO_ROOT, load_catalog
from tests.conftest import Stack

pytestmark = pytest.mark.integration

CASES_PER_MODE = 150  # per operation, once for valid and once for invalid requests
# An explanation costs tens of forward passes (up to ~1 s): fewer cases keep the suite's time in check.
EXPLAIN_CASES_PER_MODE = 40
SUMMARY = REPO_ROOT / "test-artifacts" / "fuzz-summary.json"
# The GET routes without parameters take no input: one request says all there is (and nothing can be made
# invalid); the model card's task is any string (unknown ones get 404).
OPERATIONS = [
    *(("GET", path, GenerationMode.POSITIVE) for path in ("/healthz", "/readyz", "/v1/models", "/v1/models/{task}")),
    *(("POST", spec.route, mode) for spec in load_catalog().values() for mode in GenerationMode),
    *(("POST", f"{spec.route}/explain", mode) for spec in load_catalog().values() for mode in GenerationMode),
]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]


# Refusing an invalid request with 413 (a text over its limit can also make the body too large) counts as a
# rejection; Schemathesis's default list leaves 413 out.
REJECTIONS = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429, 431]


@pytest.fixture(scope="module")
def gateway_schema(live_stack: Stack) -> schemathesis.BaseSchema:
    config = schemathesis.Config.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": REJECTIONS}}})
    return schemathesis.openapi.from_url(f"{live_stack.gateway}/openapi.json", config=config)


def _record(operation: str, mode: GenerationMode, statuses: Counter[int]) -> None:
    summary = json.loads(SUMMARY.read_text(encoding="utf-8")) if SUMMARY.exists() else {}
    summary.setdefault(operation, {})[mode.value] = {
        "cases": sum(statuses.values()),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }
    SUMMARY.parent.mkdir(exist_ok=True)
    SUMMARY.write_text(json.dumps(summary, indent=2, sort_keys=True), encoding="utf-8")


@pytest.mark.parametrize(("method", "path", "mode"), OPERATIONS, ids=lambda v: getattr(v, "value", v))
def test_gateway_answers_generated_requests_as_its_schema_says(
    gateway_schema: schemathesis.BaseSchema, method: str, path: str, mode: GenerationMode
) -> None:
    operation = next(
        op.ok()
        for op in gateway_schema.get_all_operations()
        if (op.ok().method.upper(), op.ok().path) == (method, path)
    )
    checks = CHECKS if path.startswith("/v1/pose") else [*CHECKS, positive_data_acceptance]
    cases = EXPLAIN_CASES_PER_MODE if path.endswith("/explain") else CASES_PER_MODE
    statuses: Counter[int] = Counter()

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=cases, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def fuzz(case: schemathesis.Case) -> None:
        statuses[case.call_and_validate(checks=checks, timeout=60).status_code] += 1

    fuzz()
    _record(f"{method} {path}", mode, statuses)
    assert statuses, "no cases were generated"
