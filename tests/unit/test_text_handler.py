"""The handler's plain functions and its batch assembly, without TorchServe."""

from __future__ import annotations

import pytest

from contract.serving import TextServing
from handlers.classifier_base import RequestError
from handlers.text_handler import TextClassifier, extract_text, label_scores


@pytest.mark.parametrize(
    "row",
    [{"body": {"text": "hello"}}, {"data": {"text": "hello"}}, {"body": b'{"text": "hello"}'}],
)
def test_extract_text_accepts_decoded_and_raw_json(row: dict) -> None:
    assert extract_text(row, 100) == "hello"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"body": b"\xff\xfe"}, "JSON object"),
        ({"body": b"[1, 2]"}, "JSON object"),
        ({"body": {"txt": "x"}}, "'text' is required"),
        ({"body": {"text": 3}}, "'text' is required"),
        ({"body": {"text": "  "}}, "must not be empty"),
        ({"body": {"text": "x" * 11}}, "has 11 characters; the limit is 10"),
    ],
)
def test_extract_text_rejects_bad_rows_with_a_reason(row: dict, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        extract_text(row, 10)


def test_label_scores_picks_the_most_probable_label() -> None:
    assert label_scores([0.2, 0.8], ["neg", "pos"]) == {
        "label": "pos",
        "score": 0.8,
        "scores": {"neg": 0.2, "pos": 0.8},
    }
    assert label_scores([0.9, 0.1], ["neg", "pos"])["label"] == "neg"


TEXT_CONFIG = TextServing(task="t", kind="text", model_name="t", labels=("neg", "pos"), max_chars=50, max_length=8)


class RecordingContext:
    """Stands in for TorchServe's Context: records per-slot status codes."""

    def __init__(self) -> None:
        self.statuses: dict[int, tuple[int, str]] = {}

    def set_response_status(self, code: int, phrase: str, idx: int) -> None:
        self.statuses[idx] = (code, phrase)


def test_batch_with_one_bad_slot_marks_only_that_slot() -> None:
    handler = TextClassifier()
    handler.config = TEXT_CONFIG
    handler.model_info = {"name": "t", "version": "1"}
    rows = [{"body": {"text": "good"}}, {"body": {"text": ""}}, {"body": {"text": "also good"}}]
    texts, slots = handler.preprocess(rows)
    assert texts == ["good", "also good"]
    context = RecordingContext()
    responses = handler.postprocess([[0.1, 0.9], [0.7, 0.3]], slots, context)
    assert list(context.statuses) == [1]
    assert context.statuses[1][0] == 400
    assert responses[0]["label"] == "pos"
    assert responses[1]["error"]["code"] == "invalid_request"
    assert responses[2]["label"] == "neg"
    assert responses[2]["model"] == {"name": "t", "version": "1"}


def test_kserve_v1_requests_batch_with_plain_ones_and_fail_as_a_whole() -> None:
    handler = TextClassifier()
    handler.config = TEXT_CONFIG
    handler.model_info = {"name": "t", "version": "1"}
    rows = [
        {"body": {"instances": [{"text": "a"}, {"text": "b"}]}},
        {"body": {"text": "plain"}},
        {"body": {"instances": [{"text": "ok"}, {"text": ""}]}},
        {"body": {"instances": []}},
    ]
    texts, slots = handler.preprocess(rows)
    assert texts == ["a", "b", "plain"]
    context = RecordingContext()
    responses = handler.postprocess([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]], slots, context)
    assert [p["label"] for p in responses[0]["predictions"]] == ["pos", "neg"]
    assert responses[1]["label"] == "pos"
    assert sorted(context.statuses) == [2, 3]
    assert "instances[1]: field 'text' must not be empty" in responses[2]["error"]["message"]
    assert "non-empty list" in responses[3]["error"]["message"]
