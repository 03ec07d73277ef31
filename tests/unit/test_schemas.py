from __future__ import annotations

import base64
import binascii
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

from contract.catalog import load_catalog
from gateway.errors import describe_validation_errors
from gateway.images import ImageLimits, prepare_image
from gateway.main import create_app
from gateway.schemas.requests import BASE64_PATTERN, JobSubmission, image_request_model, text_request_model
from gateway.schemas.responses import BatchPrediction, ImageBatchPrediction, ImagePrediction, Prediction
from gateway.settings import Settings, UpstreamSettings

Request = text_request_model(load_catalog()["disaster"], max_batch=3)


def test_accepts_one_text_or_a_list() -> None:
    assert Request(text="fire").items() == ["fire"]
    assert Request(texts=["a", "b"]).items() == ["a", "b"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"text": "x" * 2001}, "text"),
        ({"texts": ["a", "b", "c", "d"]}, "texts"),
        ({"texts": ["a", " "]}, "texts.1"),
        ({"text": "a", "texts": ["a"]}, "body"),
    ],
)
def test_errors_name_the_field(payload: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Request.model_validate(payload)
    fields = [d["field"] for d in describe_validation_errors(info.value.errors())]
    assert field in fields


def test_schema_shows_the_task_limits() -> None:
    schema = Request.model_json_schema()
    assert "2000" in schema["properties"]["text"]["description"]
    assert "3" in schema["properties"]["texts"]["description"]


# The OpenAPI document: what client generators and fuzzers read. Built in-process, no upstream needed.

UNREACHABLE = "http://127.0.0.1:9"
KEY_SCHEME = "ApiKey"
IMAGE_FORMS = ("ImageBase64", "ImagesBase64")


def _document(**settings: Any) -> dict[str, Any]:
    upstreams = [UpstreamSettings(inference_url=UNREACHABLE, management_url=UNREACHABLE)]
    return create_app(Settings(upstreams=upstreams, max_batch_texts=3, **settings)).openapi()


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return _document()


def _body_validator(document: dict[str, Any], route: str, media: str = "application/json") -> Draft202012Validator:
    """The route's request body schema for `media`, its `#/components/...` references resolved in the document."""
    body = document["paths"][route]["post"]["requestBody"]["content"][media]["schema"]
    return Draft202012Validator({**body, "components": document["components"]})


def test_the_multipart_photo_schema_requires_a_file_and_allows_only_what_the_gateway_reads(
    document: dict[str, Any],
) -> None:
    """Every multipart body valid under the schema is one the gateway accepts (`gateway.uploads`): a client
    generated from the document, or a fuzzer, never sends a schema-valid body that gets a 422."""
    validator = _body_validator(document, "/v1/pose", "multipart/form-data")
    photo = "<bytes>"
    assert validator.is_valid({"image": photo})
    assert validator.is_valid({"images": [photo] * 8})
    for refused in ({}, {"images": []}, {"images": [photo] * 9}, {"image": photo, "images": [photo]}, {"file": photo}):
        assert not validator.is_valid(refused), refused


def _accepted(model: type[BaseModel], payload: dict[str, Any]) -> bool:
    try:
        model.model_validate(payload)
    except ValidationError:
        return False
    return True


TEXT_BODIES = [
    {"text": "Forest fire near the highway"},
    {"texts": ["fire", "flood"]},
    {"text": "fire", "texts": None},
    {"text": None, "texts": ["fire"]},
    {},
    {"text": None},
    {"text": None, "texts": None},
    {"text": "fire", "texts": ["flood"]},
    {"text": "fire", "extra": 1},
    {"text": ""},
    {"text": " \n\t"},
    {"text": "bad\x00byte"},
    {"text": "x" * 2001},
    {"text": 5},
    {"texts": []},
    {"texts": ["a", "b", "c", "d"]},
    {"texts": ["a", " "]},
    {"texts": "fire"},
]


@pytest.mark.parametrize("payload", TEXT_BODIES)
def test_published_text_body_accepts_exactly_what_the_gateway_accepts(
    document: dict[str, Any], payload: dict[str, Any]
) -> None:
    assert _body_validator(document, "/v1/disaster").is_valid(payload) == _accepted(Request, payload)


IMAGE_BODIES = [
    {"image_base64": "aGk="},
    {"images_base64": ["aGk=", "aGk="]},
    {"image_base64": "aGk=", "images_base64": None},
    {"image_base64": None, "images_base64": ["aGk="]},
    {},
    {"image_base64": None, "images_base64": None},
    {"image_base64": "aGk=", "images_base64": ["aGk="]},
    {"image_base64": ""},
    {"images_base64": []},
    {"images_base64": ["aGk="] * 9},
    {"image_base64": "aGk=", "image": 1},
]


@pytest.mark.parametrize("payload", IMAGE_BODIES)
def test_published_image_body_accepts_exactly_what_the_gateway_accepts(
    document: dict[str, Any], payload: dict[str, Any]
) -> None:
    assert _body_validator(document, "/v1/pose").is_valid(payload) == _accepted(image_request_model(8), payload)


def test_each_form_is_a_complete_schema_and_the_rule_is_in_words(document: dict[str, Any]) -> None:
    for route, forms in (("/v1/sentiment", ("SentimentText", "SentimentTexts")), ("/v1/pose", IMAGE_FORMS)):
        body = document["paths"][route]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body["oneOf"] == [{"$ref": f"#/components/schemas/{name}"} for name in forms]
        assert "exactly one of" in body["description"]
        for name in forms:
            form = document["components"]["schemas"][name]
            assert form["type"] == "object"
            assert form["additionalProperties"] is False
            assert all("type" in field for field in form["properties"].values())
    sentiment = document["components"]["schemas"]["SentimentText"]["properties"]["text"]
    assert sentiment["maxLength"] == load_catalog()["sentiment"].text.max_chars


def test_operation_ids_are_readable(document: dict[str, Any]) -> None:
    ids = {(method, path): op["operationId"] for path, ops in document["paths"].items() for method, op in ops.items()}
    assert ids == {
        ("get", "/healthz"): "healthz",
        ("get", "/readyz"): "readyz",
        ("get", "/v1/models"): "list_models",
        ("post", "/v1/sentiment"): "classify_sentiment",
        ("post", "/v1/disaster"): "classify_disaster",
        ("post", "/v1/pose"): "classify_pose",
        ("get", "/v1/models/{task}"): "model_card",
        ("post", "/v1/sentiment/explain"): "explain_sentiment",
        ("post", "/v1/disaster/explain"): "explain_disaster",
        ("post", "/v1/pose/explain"): "explain_pose",
        ("post", "/v1/jobs"): "submit_job",
        ("get", "/v1/jobs"): "list_jobs",
        ("get", "/v1/jobs/{job_id}"): "job_status",
        ("post", "/v1/jobs/{job_id}/cancel"): "cancel_job",
        ("delete", "/v1/jobs/{job_id}"): "delete_job",
        ("get", "/v1/jobs/{job_id}/results"): "job_results",
    }


def test_explain_routes_take_the_predict_bodies_and_document_their_answers(document: dict[str, Any]) -> None:
    for route in ("/v1/sentiment", "/v1/pose"):
        predict, explain = document["paths"][route]["post"], document["paths"][f"{route}/explain"]["post"]
        assert explain["requestBody"] == predict["requestBody"]
        assert "429" in explain["responses"]
        example = explain["responses"]["200"]["content"]["application/json"]["examples"]["one"]["value"]
        assert example["explanation"]["target"] == example["label"]
    schemas = document["components"]["schemas"]
    assert {"ExplainedPrediction", "TextExplanation", "WordWeight", "ImageExplanation"} <= set(schemas)


@pytest.mark.parametrize("keys", [{}, {"api_keys": "ops:o-key"}], ids=["open", "keyed"])
def test_the_api_key_scheme_is_declared_where_the_guard_checks(keys: dict[str, str]) -> None:
    document = _document(**keys)
    assert document["components"]["securitySchemes"][KEY_SCHEME] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": document["components"]["securitySchemes"][KEY_SCHEME]["description"],
    }
    expected = [{KEY_SCHEME: []}] if keys else [{KEY_SCHEME: []}, {}]  # optional on a gateway without keys
    for path, ops in document["paths"].items():
        for op in ops.values():
            assert op["security"] == ([] if path == "/healthz" else expected), path


def _examples(operation: dict[str, Any], where: str) -> dict[str, Any]:
    node = operation["requestBody"] if where == "request" else operation["responses"]["200"]
    return {name: example["value"] for name, example in node["content"]["application/json"]["examples"].items()}


def test_examples_are_real_requests_and_answers(document: dict[str, Any]) -> None:
    catalog = load_catalog()
    assert "example input" not in json.dumps(document)
    for spec in catalog.values():
        operation = document["paths"][spec.route]["post"]
        requests, answers = _examples(operation, "request"), _examples(operation, "response")
        assert set(requests) == set(answers) == {"one", "many"}
        if spec.kind == "text":
            model = text_request_model(spec, max_batch=3)
            one, many = Prediction, BatchPrediction
        else:
            model, one, many = image_request_model(8), ImagePrediction, ImageBatchPrediction
        for body in requests.values():
            model.model_validate(body)
        if spec.kind == "image":  # a real image, that the gateway's intake accepts
            for image in (requests["one"]["image_base64"], *requests["many"]["images_base64"]):
                assert prepare_image(base64.b64decode(image), "image", ImageLimits(10**6, 10**6, 512))
        results = [one.model_validate(answers["one"]), *many.model_validate(answers["many"]).results]
        assert len(many.model_validate(answers["many"]).results) == len(next(iter(requests["many"].values())))
        for result in results:
            assert result.task == spec.task
            assert result.label in spec.labels
            assert result.model.name == spec.model_name
        if spec.kind == "text":
            assert {result.label for result in results} == set(spec.labels)  # one example per label
            assert all(len(text.split()) >= 8 for text in requests["many"]["texts"])  # sentences, not placeholders


def test_a_standard_generator_makes_every_operation(document: dict[str, Any], tmp_path: Path) -> None:
    """openapi-python-client (pinned in requirements/dev.txt) generates a function for every operation: the
    live version, which also calls them, is tests/integration/test_generated_client.py."""
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(document), encoding="utf-8")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"post_hooks": []}), encoding="utf-8")
    out = tmp_path / "client"
    command = [sys.executable, "-m", "openapi_python_client", "generate", "--path", str(spec)]
    command += ["--output-path", str(out), "--meta", "none", "--config", str(config)]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, output
    assert "will not be generated" not in output, output
    assert "warning" not in output.lower(), output
    generated = {path.stem for path in (out / "api").rglob("*.py") if path.stem != "__init__"}
    assert generated == {op["operationId"] for ops in document["paths"].values() for op in ops.values()}


def test_the_schemas_base64_rule_is_the_one_the_gateway_decodes_by() -> None:
    """What the OpenAPI document says a base64 image is, the decoder accepts, and what it refuses, the decoder
    refuses: a client generated from the document sends nothing the gateway answers with 422."""
    rule = re.compile(BASE64_PATTERN)
    for size in range(1, 64):
        text = base64.b64encode(bytes(range(size))).decode()
        assert rule.fullmatch(text), text
    for bad in ("00", "AAA", "A===", "AB=C", "YQ", "YWJj ZA==", "YWJj\nZA==", "YW-j", "YQ==YQ=="):
        assert not rule.fullmatch(bad), bad
        with pytest.raises((binascii.Error, ValueError)):
            base64.b64decode(bad, validate=True)


def test_a_json_job_names_its_file_under_the_gateways_input_prefix_in_the_schema() -> None:
    content = JobSubmission.openapi_request_body(["sentiment", "pose"], "s3://bucket/inputs/")["content"]
    body = content["application/json"]["schema"]
    assert set(body["required"]) == {"task", "input_uri"}
    assert body["properties"]["task"]["enum"] == ["sentiment", "pose"]
    assert content["multipart/form-data"]["schema"]["properties"]["task"]["enum"] == ["sentiment", "pose"]
    pattern = re.compile(body["properties"]["input_uri"]["pattern"])
    assert pattern.match("s3://bucket/inputs/rows.csv")
    assert pattern.match("s3://bucket/inputs/team.a/rows.v2.csv")
    for refused in ("https://example.com/rows.csv", "s3://bucket/other/rows.csv", "s3://bucket/inputs/../x.csv"):
        assert not pattern.match(refused), refused


def test_without_an_input_prefix_the_schema_offers_no_json_job() -> None:
    assert list(JobSubmission.openapi_request_body(["sentiment"], None)["content"]) == ["multipart/form-data"]
