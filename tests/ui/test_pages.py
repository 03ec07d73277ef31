"""Each Streamlit page run with Streamlit's AppTest against the live gateway of the integration stack."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from streamlit.testing.v1 import AppTest

from modelops import stack
from tests.conftest import Stack, free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def gateway_env(live_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("UI_GATEWAY_URL", live_stack.gateway)
    return live_stack.gateway


def run_page(name: str) -> AppTest:
    app = AppTest.from_file(f"../../ui/views/{name}.py", default_timeout=60)
    app.run()
    assert not app.exception, app.exception
    return app


def test_sentiment_page_classifies_an_example(gateway_env: str) -> None:
    app = run_page("sentiment")
    app.button(key="sentiment-example-Glowing").click().run()
    assert "wonderful film" in app.text_area(key="sentiment-text").value
    app.button(key="sentiment-classify").click().run()
    assert not app.exception
    assert not app.error
    assert app.metric[0].value in ("negative", "positive")
    assert any("version" in c.value for c in app.caption)


def test_results_are_cached_per_input_in_the_session(gateway_env: str) -> None:
    app = run_page("disaster")
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


def test_empty_text_asks_for_input(gateway_env: str) -> None:
    app = run_page("sentiment")
    app.button(key="sentiment-classify").click().run()
    assert "Enter some text" in app.info[0].value


def test_pose_page_offers_upload_camera_and_top_k(gateway_env: str) -> None:
    app = run_page("pose")
    assert app.radio(key="pose-source").options == ["Upload", "Camera"]
    assert app.slider(key="pose-top-k").value == 5
    assert not app.error


def test_status_page_shows_models_versions_and_health(gateway_env: str, live_stack: Stack) -> None:
    app = run_page("status")
    metrics = {m.label: m.value for m in app.metric}
    assert metrics == {"Gateway": "up", "Models": "ready", "TorchServe": "reachable"}
    table = app.dataframe[0].value
    assert set(table["task"]) == {"sentiment", "disaster", "pose"}
    for task, entry in live_stack.published.items():
        assert table.loc[table["task"] == task, "version"].item() == entry["version"]


@pytest.mark.parametrize("name", ["sentiment", "disaster", "pose", "status"])
def test_gateway_down_shows_a_banner_not_a_traceback(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UI_GATEWAY_URL", f"http://127.0.0.1:{free_port(set())}")
    app = run_page(name)
    assert app.error, "expected an error banner"
    assert "not reachable" in app.error[0].value


@pytest.fixture
def torchserve_stopped(live_stack: Stack) -> Iterator[None]:
    stack.stop(live_stack.cfg, "torchserve")
    yield
    live_stack.ensure_torchserve()


def test_model_not_ready_shows_a_warning(gateway_env: str, torchserve_stopped: None) -> None:
    page = run_page("sentiment")
    assert "not ready" in page.warning[0].value
    status = run_page("status")
    assert {m.label: m.value for m in status.metric}["Models"] == "not ready"
    assert status.warning
