from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.errors import describe_validation_errors
from gateway.schemas import text_request_model
from modelops.catalog import load_catalog

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
