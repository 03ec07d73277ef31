"""Explanations and model cards over real HTTP: gateway -> TorchServe's explanations API and customized
describe -> the archive's handler."""

from __future__ import annotations

import base64
import io
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image

from bench import faithfulness
from contract.model_card import read_model_card
from modelops.train.data import data_dir
from tests import imagegen
from tests.conftest import Stack
from tests.integration.test_lifecycle import load, new_version

pytestmark = pytest.mark.integration

REVIEW = (
    "I expected little from this film, yet the acting is superb and the story moving. The middle drags and one "
    "scene is silly, but the ending is wonderful and I would gladly watch it again."
)


def _photo(seed: int = 0) -> bytes:
    return imagegen.encode(imagegen.photo(seed=seed), "PNG")


@pytest.mark.parametrize("task", ["sentiment", "disaster"])
def test_text_explanations_weigh_every_word_of_the_text(client: httpx.Client, live_stack: Stack, task: str) -> None:
    spec = live_stack.catalog[task]
    text = spec.text.examples[0].text if spec.kind == "text" else ""
    response = client.post(f"{spec.route}/explain", json={"text": text})
    assert response.status_code == 200, response.text
    answer = response.json()
    plain = client.post(spec.route, json={"text": text}).json()
    # the explained answer is the answer: same label and scores as the prediction route
    assert (answer["label"], answer["scores"]) == (plain["label"], plain["scores"])
    assert answer["model"]["version"] == live_stack.published[task]["version"]
    explanation = answer["explanation"]
    assert explanation["method"] == "occlusion"
    assert explanation["target"] == answer["label"]
    assert [w["word"] for w in explanation["words"]] == text.split()
    for word in explanation["words"]:
        assert text[word["start"] : word["end"]] == word["word"]
        assert word["weight"] == pytest.approx(sum(word["members"].values()), abs=2e-5)
    assert set(explanation["members"]) == {"encoder", "linear"}  # both recipes blend the linear member
    assert sum(m["blend_weight"] for m in explanation["members"].values()) == pytest.approx(1.0)


def test_a_batch_of_texts_is_explained_in_order(client: httpx.Client) -> None:
    texts = ["Flood waters rising in the valley", "Loving this sunny afternoon", "Wildfire near the school"]
    response = client.post("/v1/disaster/explain", json={"texts": texts})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [" ".join(w["word"] for w in r["explanation"]["words"]) for r in results] == texts


def test_photo_explanation_has_a_grid_and_an_overlay(client: httpx.Client, live_stack: Stack) -> None:
    data = _photo()
    response = client.post("/v1/pose/explain", files={"image": ("p.png", data)}, params={"overlay": "true"})
    assert response.status_code == 200, response.text
    answer = response.json()
    plain = client.post("/v1/pose", files={"image": ("p.png", data)}).json()
    assert answer["top_k"] == plain["top_k"]
    explanation = answer["explanation"]
    assert explanation["target"] == answer["label"]
    assert len(explanation["grid"]) == 7
    assert all(len(row) == 7 for row in explanation["grid"])
    overlay = Image.open(io.BytesIO(base64.b64decode(explanation["overlay_png_base64"])))
    assert overlay.size == (explanation["input_size"],) * 2
    without = client.post("/v1/pose/explain", json={"image_base64": base64.b64encode(data).decode()}).json()
    assert "overlay_png_base64" not in without["explanation"]
    assert without["explanation"]["grid"] == explanation["grid"]


@pytest.mark.parametrize(
    ("route", "kwargs"),
    [
        ("/v1/sentiment", {"json": {"text": ""}}),
        ("/v1/sentiment", {"json": {"text": "x" * 20001}}),
        ("/v1/sentiment", {"json": {"text": "a\x00b"}}),
        ("/v1/sentiment", {"json": {"text": "a", "texts": ["b"]}}),
        ("/v1/disaster", {"json": {"texts": ["a"] * 33}}),
        ("/v1/disaster", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
        ("/v1/disaster", {"content": b"text", "headers": {"content-type": "text/plain"}}),
        ("/v1/pose", {"files": {"image": ("a.jpg", b"Dear diary, not a photo.")}}),
        ("/v1/pose", {"files": {"image": ("a.png", imagegen.png_bomb())}}),
        ("/v1/pose", {"json": {"image_base64": "%%%"}}),
    ],
    ids=[
        "empty",
        "too-long",
        "control-char",
        "both-fields",
        "too-many",
        "bad-json",
        "not-json",
        "not-image",
        "bomb",
        "b64",
    ],
)
def test_hostile_input_gets_the_same_error_as_a_prediction(client: httpx.Client, route: str, kwargs: dict) -> None:
    predicted = client.post(route, **kwargs)
    explained = client.post(f"{route}/explain", **kwargs)
    assert 400 <= predicted.status_code < 500
    assert explained.status_code == predicted.status_code, explained.text
    assert explained.json() == predicted.json()


def test_an_explain_burst_gets_429_and_predictions_keep_answering(client: httpx.Client, live_stack: Stack) -> None:
    """The gateway allows one explanation per model at a time (the default): a burst of eight gets 429s with
    Retry-After, while a prediction load on the same model beside it sees no error."""
    review = " ".join([REVIEW] * 4)

    def explain(_: int) -> httpx.Response:
        return httpx.post(f"{live_stack.gateway}/v1/sentiment/explain", json={"text": review}, timeout=120)

    with load(live_stack, "/v1/sentiment") as loop, ThreadPoolExecutor(8) as pool:
        while len(loop.seen) < 3:
            threading.Event().wait(0.05)
        answers = list(pool.map(explain, range(8)))
        during = len(loop.seen)
    statuses = Counter(r.status_code for r in answers)
    assert statuses[200] >= 1
    assert statuses[429] >= 1
    assert set(statuses) <= {200, 429}
    busy = next(r for r in answers if r.status_code == 429)
    assert busy.json()["error"]["code"] == "explain_busy"
    assert int(busy.headers["Retry-After"]) >= 1
    assert during > 3
    assert loop.failures == []
    metrics = client.get("/metrics").text
    assert 'gateway_explain_refused_total{model="sentiment"}' in metrics


@pytest.mark.parametrize("task", ["sentiment", "disaster", "pose"])
def test_the_model_card_is_the_one_in_the_serving_archive(client: httpx.Client, live_stack: Stack, task: str) -> None:
    response = client.get(f"/v1/models/{task}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == live_stack.published[task]["version"]
    assert body["card"] == read_model_card(live_stack.archives[task])
    assert "accuracy_ci95" in body["card"]["validation"]


def test_an_unknown_task_has_no_card(client: httpx.Client) -> None:
    response = client.get("/v1/models/astrology")
    assert response.status_code == 404
    assert "sentiment" in response.json()["error"]["message"]


def test_after_a_rollout_the_card_is_the_new_versions(client: httpx.Client, live_stack: Stack) -> None:
    v1 = live_stack.published["pose"]["version"]
    archive = new_version(live_stack, "pose", "card")
    v2 = live_stack.store.publish(archive)["version"]
    try:
        assert live_stack.sync()["pose"] == "switched"
        body = client.get("/v1/models/pose").json()
        assert body["version"] == v2
        assert body["card"] == read_model_card(archive)
        assert body["card"]["version"] == v2
    finally:
        assert live_stack.store.set_default("pose") == v1
        assert live_stack.sync()["pose"] == "switched"
    assert client.get("/v1/models/pose").json()["version"] == v1


@pytest.mark.parametrize("task", ["disaster", "pose"])
def test_the_deletion_test_runs_through_the_stack(live_stack: Stack, task: str) -> None:
    """A small run of `python -m bench.faithfulness` (README figures: 200 items per task on the real models).
    The test models are trained for two steps, so only better than chance is asked of them."""
    report = faithfulness.run(live_stack.catalog[task], data_dir(), live_stack.gateway, items=12)
    assert report["items"] == 12
    assert report["faithful_share"] > 0.5
    assert report["mean_drop_top"] > report["mean_drop_random"]
    assert report["explain_ms_p50"] > 0
