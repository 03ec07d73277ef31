"""The UI's parts that need no page: gateway failures read as sentences that say what to change, the explain
and card routes are asked for as the gateway serves them, an explanation's words become escaped, shaded HTML,
and a model card missing figures still makes a row."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from ui.client import GatewayClient, GatewayError
from ui.explanations import shaded_html
from ui.status_page import card_figures


@pytest.mark.parametrize(
    ("status", "advice"),
    [
        (413, "too large"),
        (415, "not a supported image"),
        (422, "not accepted"),
        (503, "not ready"),
        (504, "took too long"),
        (None, "cannot be reached"),
    ],
)
def test_each_failure_reads_as_advice(status: int | None, advice: str) -> None:
    text = str(GatewayError(status, "code", "images[0]: 20000x20000 pixels"))
    assert advice in text
    assert "Traceback" not in text
    if status is not None:
        assert "20000x20000" in text  # the gateway's own message, which names the field and limit, is kept


def recording_client(sent: list[httpx.Request], status: int = 200) -> GatewayClient:
    """A client whose requests are recorded in `sent` and answered `{"results": [{}]}` with `status`."""
    client = GatewayClient("http://gateway")

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        body = {"error": {"code": "explain_busy", "message": "retry in 2s"}} if status >= 400 else {"results": [{}]}
        return httpx.Response(status, json=body)

    client.http = httpx.Client(base_url=client.base_url, transport=httpx.MockTransport(answer))
    return client


def test_explanations_and_cards_are_asked_for_on_the_gateways_routes() -> None:
    sent: list[httpx.Request] = []
    client = recording_client(sent)
    client.explain_texts("/v1/sentiment", ["good", "bad"])
    client.explain_image("/v1/pose", b"photo", "photo.jpg", 3)
    client.model_card("pose")
    texts, image, card = sent
    assert (texts.method, texts.url.path, json.loads(texts.content)) == (
        "POST",
        "/v1/sentiment/explain",
        {"texts": ["good", "bad"]},
    )
    assert (image.url.path, dict(image.url.params)) == ("/v1/pose/explain", {"top_k": "3", "overlay": "true"})
    assert b'name="image"' in image.content
    assert (card.method, card.url.path) == ("GET", "/v1/models/pose")


def test_a_busy_explanation_says_to_wait_with_the_gateways_message() -> None:
    with pytest.raises(GatewayError) as raised:
        recording_client([], status=429).explain_texts("/v1/sentiment", ["good"])
    assert (raised.value.code, raised.value.status) == ("explain_busy", 429)
    assert "Wait a moment" in str(raised.value)
    assert "retry in 2s" in str(raised.value)


def words(text: str, weights: list[float]) -> list[dict[str, object]]:
    """An explanation's `words`: the whitespace-separated words of `text` (markup blanked), one weight each."""
    blanked = re.sub(r"<br\s*/?>", lambda m: " " * len(m.group()), text)
    found = list(re.finditer(r"\S+", blanked))
    return [
        {"start": m.start(), "end": m.end(), "word": m.group(), "weight": w}
        for m, w in zip(found, weights, strict=True)
    ]


def test_words_are_shaded_green_for_the_label_and_red_against_it_by_their_share_of_the_largest() -> None:
    shaded = shaded_html("great but slow", words("great but slow", [0.4, -0.2, 0.0]))
    assert '<span class="word supports"' in shaded
    assert "rgba(22, 163, 74, 0.700)" in shaded  # the heaviest word: the strongest shade
    assert 'class="word against" title="weight -0.2000"' in shaded
    assert "rgba(220, 38, 38, 0.350)" in shaded  # half the largest |weight|: half the shade
    assert "rgba(22, 163, 74, 0.000)" in shaded  # a word without effect stays unshaded
    assert re.sub(r"<[^>]+>", "", shaded) == "great but slow"  # every character once, in order


def test_shading_escapes_the_text_and_keeps_the_characters_between_words() -> None:
    text = 'Loved <script>alert("x")</script> it &\tmore<br /><br />The end'
    shaded = shaded_html(text, words(text, [0.1, -0.1, 0.1, 0.1, 0.1, 0.1, 0.1]))
    assert "<script>" not in shaded
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;</span>" in shaded
    assert ">&amp;</span>\t<span" in shaded
    assert ">more</span><br><br><span" in shaded  # IMDb's markup is a line break, not a word


def test_shading_without_words_or_weights_is_the_escaped_text() -> None:
    assert "&lt;3" in shaded_html("<3", [])
    assert "rgba(22, 163, 74, 0.000)" in shaded_html("flat", words("flat", [0.0]))


def test_a_card_without_figures_leaves_them_empty() -> None:
    figures = card_figures({"version": "1", "card": {"validation": {"accuracy": 0.5}}})
    assert (figures["version"], figures["accuracy"]) == ("1", "50.0%")
    assert {name for name, value in figures.items() if value is None} == set(figures) - {"version", "accuracy"}


def test_a_card_says_whether_its_figures_are_cross_validated() -> None:
    validation = {"accuracy": 0.66, "accuracy_ci95": [0.63, 0.71]}
    added = card_figures({"card": {"validation": validation, "evaluation": "cross-validation"}})
    built_in = card_figures({"card": {"validation": validation}})
    assert (added["measured on"], built_in["measured on"]) == ("cross-validation", "validation split")


def test_a_card_shows_the_figures_of_the_runtime_that_answers_callers() -> None:
    """An int8 variant's answers are what callers get: its figures, not the fp32 model's it was made from."""
    fp32 = {"accuracy": 0.8226, "accuracy_ci95": [0.79, 0.855], "ece": 0.0187, "macro_f1": 0.8158}
    int8 = {"accuracy": 0.8136, "accuracy_ci95": [0.781, 0.844], "ece": 0.0365, "macro_f1": 0.807}
    runtime = {"served": "onnx-int8", "variants": {"torch": {"accuracy": 0.8226}, "onnx-int8": int8}}
    figures = card_figures({"version": "2", "card": {"validation": fp32, "runtime": runtime}})
    assert (figures["accuracy"], figures["ECE"], figures["macro-F1"]) == ("81.4%", "0.036", "0.807")
    assert figures["accuracy, 95% interval"] == "78.1% to 84.4%"
    assert figures["runtime served"] == "onnx-int8"
    # served in torch, or a card from before variants carried their figures: the fp32 model's
    for fp32_shown in ({**runtime, "served": "torch"}, {**runtime, "variants": {"onnx-int8": {"accuracy": 0.81}}}):
        figures = card_figures({"version": "2", "card": {"validation": fp32, "runtime": fp32_shown}})
        assert figures["accuracy"] == "82.3%"


def test_a_job_is_deleted_with_delete_and_cancelled_with_its_cancel_action() -> None:
    sent: list[httpx.Request] = []
    client = recording_client(sent)
    client.delete_job("abc")
    client.cancel_job("abc")
    assert [(r.method, r.url.path) for r in sent] == [("DELETE", "/v1/jobs/abc"), ("POST", "/v1/jobs/abc/cancel")]
    with pytest.raises(GatewayError) as refused:
        recording_client([], status=404).delete_job("gone")
    assert refused.value.status == 404
