"""The Streamlit app run with Streamlit's AppTest: its pages come from whatever `/v1/models` answers.

A stub gateway serving tasks the UI has never heard of shows that a catalog entry is all a new page needs;
the `integration` tests run the same app against the live gateway of the integration stack.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest
from streamlit.util import calc_hash

from modelops.local import stack
from tests.conftest import Stack, free_port
from tests.ui.stub_gateway import StubGateway, model_entry

APP = "../../ui/app.py"  # relative to this file
# Tasks no UI code names: a text task, an image task, and a kind the UI has no form for.
NEW_TASKS = [
    model_entry("spam", "text", ["ham", "spam"], "Is this text message spam?", max_chars=40),
    model_entry("birds", "image", ["crow", "finch", "robin"], "Which bird is in the photo", max_chars=None),
    model_entry("birdsong", "audio", ["crow", "finch"], "Which bird is singing", max_chars=None),
]


def run_app(page: str | None = None) -> AppTest:
    """The app after its first run, on its home page or on the page at `/<page>`."""
    app = AppTest.from_file(APP, default_timeout=60)
    app.run()
    if page is not None:
        # What the browser sends for /<page>: st.navigation knows a page by the hash of its url_path.
        # (AppTest.switch_page only finds pages that are files; these pages are functions.)
        app._page_hash = calc_hash(page)
        app.run()
    assert not app.exception, app.exception
    return app


def button(app: AppTest, label: str) -> Any:
    return next(b for b in app.button if b.label == label)


def photo() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "teal").save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[StubGateway]:
    with StubGateway(NEW_TASKS) as gateway:
        monkeypatch.setenv("UI_GATEWAY_URL", gateway.url)
        yield gateway


def test_a_new_text_task_gets_a_page_from_the_catalog(stub: StubGateway) -> None:
    app = run_app()  # the first task listed is the home page
    assert app.title[0].value == "Is this text message spam?"
    assert "ham, spam" in app.caption[0].value
    assert "40 characters" in app.caption[0].value
    assert app.text_area(key="spam-text").max_chars == 40
    app.text_area(key="spam-text").input("WIN a FREE prize, reply now").run()
    app.button(key="spam-classify").click().run()
    assert not app.exception
    assert not app.error
    assert app.metric[0].value == "spam"
    assert any("version 7" in c.value for c in app.caption)
    assert ("POST", "/v1/spam") in stub.requests


def test_a_new_text_task_classifies_a_csv_leaving_empty_and_too_long_texts_unlabelled(stub: StubGateway) -> None:
    app = run_app()
    csv = "id,message\n1,call me back\n2,\n3," + "x" * 41 + "\n"
    app.file_uploader(key="spam-csv").set_value(("messages.csv", csv.encode(), "text/csv")).run()
    assert app.selectbox(key="spam-column").value == "message"
    app.button(key="spam-classify-file").click().run()
    assert not app.exception
    table = app.dataframe[0].value
    assert table["predicted_label"].tolist()[0] == "spam"
    assert table["predicted_label"].isna().tolist() == [False, True, True]
    assert any("2 rows left unlabelled" in c.value for c in app.caption)
    assert stub.requests.count(("POST", "/v1/spam")) == 1  # one batch, of the one usable text


def test_a_new_image_task_gets_a_page_from_the_catalog(stub: StubGateway) -> None:
    app = run_app("birds")
    assert app.title[0].value == "Which bird is in the photo"
    assert app.radio(key="birds-source").options == ["Upload", "Camera"]
    top_k = app.slider(key="birds-top-k")
    assert (top_k.max, top_k.value) == (3, 3)  # no more labels than the task has
    app.file_uploader(key="birds-upload").set_value(("bird.png", photo(), "image/png")).run()
    assert not app.exception
    assert not app.error
    assert app.metric[0].value == "robin"
    assert ("POST", "/v1/birds") in stub.requests


def test_a_task_of_a_kind_without_a_form_gets_a_page_that_says_so(stub: StubGateway) -> None:
    app = run_app("birdsong")
    assert app.title[0].value == "Which bird is singing"
    assert "POST /v1/birdsong" in app.info[0].value


def test_status_page_lists_every_catalog_task(stub: StubGateway) -> None:
    app = run_app("status")
    assert {m.label: m.value for m in app.metric} == {"Gateway": "up", "Models": "ready", "TorchServe": "reachable"}
    table = app.dataframe[0].value
    assert table["task"].tolist() == ["spam", "birds", "birdsong"]
    assert set(table["version"]) == {"7"}


def test_gateway_down_at_start_says_why_and_recovers_on_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port(set())
    monkeypatch.setenv("UI_GATEWAY_URL", f"http://127.0.0.1:{port}")
    app = run_app()
    assert app.error, "expected an error banner"
    assert "unavailable" in app.error[0].value
    assert "not reachable" in app.error[0].value
    with StubGateway(NEW_TASKS, port):  # the gateway comes up; the same session retries
        button(app, "Retry").click().run()
        assert not app.exception
        assert not app.error
        assert app.title[0].value == "Is this text message spam?"


@pytest.fixture
def gateway_env(live_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("UI_GATEWAY_URL", live_stack.gateway)
    return live_stack.gateway


@pytest.mark.integration
def test_sentiment_page_classifies_a_review(gateway_env: str, live_stack: Stack) -> None:
    app = run_app()  # sentiment is the catalog's first task
    assert app.title[0].value == live_stack.catalog["sentiment"].description
    app.text_area(key="sentiment-text").input("A wonderful film: sharp writing and a moving score.").run()
    app.button(key="sentiment-classify").click().run()
    assert not app.exception
    assert not app.error
    assert app.metric[0].value in ("negative", "positive")
    assert any("version" in c.value for c in app.caption)


@pytest.mark.integration
def test_results_are_cached_per_input_in_the_session(gateway_env: str) -> None:
    app = run_app("disaster")
    app.text_area(key="disaster-text").input("Flood waters rising downtown").run()
    app.button(key="disaster-classify").click().run()
    first = app.metric[0].value
    assert len(app.session_state["results"]) == 1
    app.button(key="disaster-classify").click().run()  # same input: served from the session cache
    assert len(app.session_state["results"]) == 1
    assert app.metric[0].value == first
    app.text_area(key="disaster-text").input("Lovely sunny day at the beach").run()
    app.button(key="disaster-classify").click().run()
    assert len(app.session_state["results"]) == 2


@pytest.mark.integration
def test_empty_text_asks_for_input(gateway_env: str) -> None:
    app = run_app()
    app.button(key="sentiment-classify").click().run()
    assert "Enter some text" in app.info[0].value


@pytest.mark.integration
def test_pose_page_offers_upload_camera_and_top_k(gateway_env: str, live_stack: Stack) -> None:
    app = run_app("pose")
    assert app.radio(key="pose-source").options == ["Upload", "Camera"]
    top_k = app.slider(key="pose-top-k")
    assert (top_k.value, top_k.max) == (5, len(live_stack.catalog["pose"].labels))
    assert not app.error


@pytest.mark.integration
def test_status_page_shows_models_versions_and_health(gateway_env: str, live_stack: Stack) -> None:
    app = run_app("status")
    metrics = {m.label: m.value for m in app.metric}
    assert metrics == {"Gateway": "up", "Models": "ready", "TorchServe": "reachable"}
    table = app.dataframe[0].value
    assert set(table["task"]) == set(live_stack.catalog)
    for task, entry in live_stack.published.items():
        assert table.loc[table["task"] == task, "version"].item() == entry["version"]


@pytest.fixture
def torchserve_stopped(live_stack: Stack) -> Iterator[None]:
    stack.stop(live_stack.cfg, "torchserve")
    yield
    live_stack.ensure_torchserve()


@pytest.mark.integration
def test_model_not_ready_shows_a_warning(gateway_env: str, torchserve_stopped: None) -> None:
    page = run_app()
    assert "not ready" in page.warning[0].value
    status = run_app("status")
    assert {m.label: m.value for m in status.metric}["Models"] == "not ready"
    assert status.warning
