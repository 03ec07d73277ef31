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

from modelops.local import services
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


def _scaled(entry: dict[str, Any], state: str, workers: int) -> dict[str, Any]:
    scaling = {
        "state": state,
        "workers": workers,
        "min_workers": 0,
        "max_workers": 2,
        "last_used": "2026-12-07T10:00:00+00:00",
        "idle_s": 400.0 if state == "cold" else 3.0,
        "memory_mb": 310.0 * workers,
        "worker_memory_mb": 310.0,
    }
    return {**entry, "scaling": scaling}


def test_status_page_of_many_tasks_finds_them_by_search_and_asks_no_cold_task_for_its_card(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    team = [
        _scaled(model_entry(f"team_{i}", "text", ["no", "yes"], f"Team {i} tickets", 100), "cold", 0) for i in range(9)
    ]
    models = [_scaled(NEW_TASKS[0], "warm", 1), *team]
    with StubGateway(models) as gateway:
        monkeypatch.setenv("UI_GATEWAY_URL", gateway.url)
        app = run_app("status")
        table = app.dataframe[0].value
        assert len(table) == 10
        assert table.loc[table["task"] == "team_3", ["state", "workers", "last used"]].values.tolist() == [
            ["cold", 0, "7 min ago"]
        ]
        assert ("GET", "/v1/models/spam") in gateway.requests
        assert not [r for r in gateway.requests if r[1].startswith("/v1/models/team_")]
        app.text_input(key="status-search").input("team_1").run()
        assert app.dataframe[0].value["task"].tolist() == ["team_1"]
        app.selectbox(key="status-cold-card").select("team_1").run()
        assert ("GET", "/v1/models/team_1") in gateway.requests


def test_explain_shades_each_word_of_the_text_by_its_weight(stub: StubGateway) -> None:
    app = run_app()
    app.text_area(key="spam-text").input("WIN a <b>free</b> prize, not a scam").run()
    app.toggle(key="spam-explain").set_value(True).run()
    app.button(key="spam-classify").click().run()
    assert not app.exception
    assert not app.error
    assert stub.requests[-1] == ("POST", "/v1/spam/explain")
    shaded = app.html[0].value
    assert shaded.count('class="word supports"') == 6
    assert shaded.count('class="word against"') == 1  # "not", a keyword the stub weighs against its label
    assert "&lt;b&gt;free&lt;/b&gt;" in shaded  # the text is escaped, not rendered as markup
    assert any("how much the probability of spam drops when the word is removed" in c.value for c in app.caption)
    members = app.table[0].value
    assert members["member"].tolist() == ["encoder", "linear"]
    assert members["blend weight"].tolist() == [0.75, 0.25]
    assert app.metric[0].value == "spam"  # the answer is still shown
    assert "spam (explain)" in app.session_state["latency"]  # kept apart from the predictions' latency


def test_explain_toggle_off_classifies_without_an_explanation(stub: StubGateway) -> None:
    app = run_app()
    app.text_area(key="spam-text").input("call me back").run()
    app.button(key="spam-classify").click().run()
    assert stub.requests[-1] == ("POST", "/v1/spam")
    assert not app.html


def test_explain_shows_the_heat_map_next_to_the_photo(stub: StubGateway) -> None:
    app = run_app("birds")
    app.toggle(key="birds-explain").set_value(True).run()
    app.file_uploader(key="birds-upload").set_value(("bird.png", photo(), "image/png")).run()
    assert not app.exception
    assert not app.error
    assert stub.requests[-1] == ("POST", "/v1/birds/explain")
    captions = [caption for image in app.image for caption in image.captions]
    assert captions == ["bird.png", "What the model looked at"]
    assert any("Red cells support robin" in c.value and "centre crop" in c.value for c in app.caption)
    assert app.metric[0].value == "robin"


def _card_table(app: AppTest) -> Any:
    return next(frame.value for frame in app.dataframe if "macro-F1" in frame.value.index)


def test_status_page_shows_each_model_card(stub: StubGateway) -> None:
    app = run_app("status")
    assert not app.exception
    assert ("GET", "/v1/models/birds") in stub.requests
    cards = _card_table(app)
    assert cards.columns.tolist() == ["spam", "birds", "birdsong"]
    assert cards["spam"].to_dict() == {
        "version": "7",
        "recipe": "fast",
        "base checkpoint": "pypi:stub_checkpoint",
        "built at": "2026-11-29T12:34:31Z",
        "accuracy": "80.0%",
        "accuracy, 95% interval": "71.2% to 86.5%",
        "macro-F1": "0.800",
        "ECE": "0.035",
        "runtime served": "onnx-int8",
        "train examples": "400",
        "validation examples": "20",
        "measured on": "validation split",
    }
    assert [e.label for e in app.expander] == [
        f"{task}: per-class figures and confusion matrix" for task in ("spam", "birds", "birdsong")
    ]
    birds = app.expander[1].dataframe
    assert birds[0].value.loc["robin", "recall"] == 0.8
    assert birds[1].value.loc["robin"].tolist() == [2, 0, 8]  # true robin: 2 taken for crows, 8 right


def test_a_model_card_that_cannot_be_read_warns_and_the_others_still_show(stub: StubGateway) -> None:
    stub.cardless.add("birds")
    app = run_app("status")
    assert not app.exception
    assert "The birds model card is not available" in app.warning[0].value
    assert "not ready" in app.warning[0].value  # the advice for a 503, with the gateway's message
    assert _card_table(app).columns.tolist() == ["spam", "birdsong"]


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
    services.stop(live_stack.cfg, "torchserve")
    yield
    live_stack.ensure_torchserve()


@pytest.mark.integration
def test_model_not_ready_shows_a_warning(gateway_env: str, torchserve_stopped: None) -> None:
    page = run_app()
    assert "not ready" in page.warning[0].value
    status = run_app("status")
    assert {m.label: m.value for m in status.metric}["Models"] == "not ready"
    assert status.warning
