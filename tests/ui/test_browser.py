"""End to end in a real browser: Debian's headless Chromium driven by Playwright against the Streamlit UI,
which talks to the live gateway (or to a stub gateway: one that comes up late, to show the UI recovering from an
outage, and one whose made-up explanations have known shades). Screenshots land in test-artifacts/ui/."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from contract.catalog import REPO_ROOT
from modelops.local import services, web
from modelops.local.config import LOOPBACK, StackConfig
from modelops.train.data import data_dir
from tests.conftest import Stack, free_port
from tests.ui.stub_gateway import StubGateway, model_entry

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO_ROOT / "test-artifacts" / "ui"
# Without the background-networking switches Chromium keeps dialling out, which this sandbox refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]

POSE_LABELS = [
    *("calling", "clapping", "cycling", "dancing", "drinking", "eating", "fighting", "hugging", "laughing"),
    *("listening_to_music", "running", "sitting", "sleeping", "texting", "using_laptop"),
]


@pytest.fixture(scope="module")
def ui_url(live_stack: Stack) -> Iterator[str]:
    cfg = dataclasses.replace(live_stack.cfg, ui_port=free_port(set()))
    services.start(cfg, web.ui(cfg))
    yield cfg.ui_url
    services.stop(cfg, "ui")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}; .ci/run installs Debian's chromium package")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def new_page(browser: Any) -> Any:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(60_000)
    return page


@pytest.fixture(scope="module")
def browser_page(browser: Any, ui_url: str) -> Any:
    """One browser tab for the live UI, shared by the tests below as one user's session."""
    return new_page(browser)


def test_review_gets_a_label(browser_page, ui_url: str) -> None:
    page = browser_page
    page.goto(ui_url)
    page.get_by_label("Text", exact=True).fill("What a wonderful film, I loved every minute of it")
    page.get_by_role("button", name="Classify", exact=True).click()
    label = page.get_by_test_id("stMetricValue").first
    label.wait_for()
    assert label.inner_text() in ("negative", "positive")
    page.locator("[data-testid=stVegaLiteChart] svg").first.wait_for()  # the class-score chart drew
    page.screenshot(path=str(ARTIFACTS / "sentiment.png"), full_page=True)


def test_csv_is_classified_and_downloadable(browser_page, ui_url: str, tmp_path: Path) -> None:
    page = browser_page
    csv = tmp_path / "tweets.csv"
    csv.write_text("id,tweet\n1,Forest fire near the town\n2,\n3,I love sunny days\n")
    page.goto(f"{ui_url}/disaster")
    page.get_by_role("tab", name="CSV file").click()
    page.locator("input[type=file]").set_input_files(str(csv))
    page.get_by_role("button", name="Classify file").click()
    download_button = page.get_by_role("button", name="Download CSV with predictions")
    download_button.wait_for()
    with page.expect_download() as download:
        download_button.click()
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0] == "id,tweet,predicted_label,predicted_score"
    assert lines[1].split(",")[2] in ("disaster", "not_disaster")
    assert lines[2] == "2,,,"  # the empty cell is left unlabelled
    page.screenshot(path=str(ARTIFACTS / "disaster-csv.png"), full_page=True)


def test_photo_gets_a_label(browser_page, ui_url: str) -> None:
    page = browser_page
    photo = data_dir() / "pose" / "running" / "Image_114.jpg"  # a validation-split photo
    page.goto(f"{ui_url}/pose")
    page.locator("input[type=file]").set_input_files(str(photo))
    label = page.get_by_test_id("stMetricValue").first
    label.wait_for()
    assert label.inner_text().replace(" ", "_") in POSE_LABELS
    page.locator("[data-testid=stVegaLiteChart] svg").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "pose.png"), full_page=True)


def test_explain_on_the_live_stack_shades_words_and_paints_the_photo(browser_page, ui_url: str) -> None:
    """The Explain toggle against the real gateway and TorchServe: every word of the review comes back shaded
    one way or the other, and the photo's heat map is drawn over the crop the model classified."""
    page = browser_page
    review = "A wonderful film, but the middle drags. Not boring for a second: the best score of the year!"
    page.goto(ui_url)
    page.get_by_label("Text", exact=True).fill(review)
    page.get_by_text("Explain", exact=True).click()
    page.get_by_role("button", name="Classify", exact=True).click()
    page.locator(".explained-text .word").first.wait_for()
    assert page.locator(".explained-text .word").count() == len(review.split())
    page.get_by_test_id("stTable").get_by_text("linear").wait_for()  # each blend member's answer
    page.screenshot(path=str(ARTIFACTS / "explain-text.png"), full_page=True)

    page.goto(f"{ui_url}/pose")
    page.get_by_text("Explain", exact=True).click()
    page.locator("input[type=file]").set_input_files(str(data_dir() / "pose" / "running" / "Image_114.jpg"))
    overlay = page.get_by_test_id("stImage").filter(has_text="What the model looked at").locator("img")
    overlay.wait_for()
    assert overlay.evaluate("image => image.complete && image.naturalWidth") == 224
    page.screenshot(path=str(ARTIFACTS / "explain-image.png"), full_page=True)


def test_status_page_after_a_request_in_the_same_session(browser_page, ui_url: str) -> None:
    page = browser_page
    page.goto(ui_url)
    page.get_by_label("Text", exact=True).fill("A dull, lifeless remake")
    page.get_by_role("button", name="Classify", exact=True).click()
    page.get_by_test_id("stMetricValue").first.wait_for()
    page.get_by_role("link", name="Status").click()  # in-app navigation keeps the session
    page.get_by_text("Recent latency").wait_for()
    assert page.get_by_test_id("stMetricValue").first.inner_text() == "up"
    page.get_by_test_id("stDataFrame").nth(1).wait_for()  # models table, then this session's latency table
    assert page.get_by_text("No requests yet").count() == 0
    page.screenshot(path=str(ARTIFACTS / "status.png"), full_page=True)


@pytest.fixture(scope="module")
def jobs_worker(live_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A job worker for the live gateway, as `make run` starts one."""
    cfg = StackConfig(state_dir=tmp_path_factory.mktemp("ui-jobs"), gateway_port=live_stack.cfg.gateway_port)
    services.start(cfg, web.jobs_worker(cfg))
    yield
    services.stop(cfg, "jobs")


def test_bulk_job_runs_on_the_server_and_survives_a_reload(
    browser: Any, ui_url: str, jobs_worker: None, live_stack: Stack, tmp_path: Path
) -> None:
    """A file handed to the bulk page becomes a job on the server: a fresh tab at the page's address (a reload,
    another browser) finds it, its results download with one line per row, in order, and its Delete button
    removes it from the server."""
    reviews = tmp_path / "reviews.csv"
    reviews.write_text(
        "review_id,text\n"
        + "".join(f"r{i},{'A warm and funny film' if i % 2 else 'Dull and far too long'}\n" for i in range(300))
    )
    page = new_page(browser)
    page.goto(f"{ui_url}/jobs")
    page.locator("input[type=file]").set_input_files(str(reviews))
    page.get_by_role("button", name="Start the job").click()
    page.wait_for_url("**/jobs?job=*")
    address = page.url
    page.close()
    again = new_page(browser)  # the first tab is gone: the job is not
    again.goto(address)
    download = again.get_by_role("button", name="Download results (CSV)")
    download.wait_for(timeout=180_000)
    assert again.get_by_text("300 of 300 rows").count() == 1
    with again.expect_download() as saved:
        download.click()
    lines = Path(saved.value.path()).read_text().splitlines()
    assert len(lines) == 301
    assert lines[0].startswith("row,id,label,score,")
    assert [line.split(",")[:2] for line in lines[1:4]] == [["1", "r0"], ["2", "r1"], ["3", "r2"]]
    assert {line.split(",")[2] for line in lines[1:]} <= {"negative", "positive"}
    again.screenshot(path=str(ARTIFACTS / "bulk-job.png"), full_page=True)
    job_id = address.rsplit("job=", 1)[1]
    again.get_by_role("button", name="Delete the job and its results").click()
    again.get_by_text(f"Job {job_id} deleted").wait_for(timeout=30_000)
    assert httpx.get(f"{live_stack.gateway}/v1/jobs/{job_id}", timeout=10).status_code == 404


@contextmanager
def ui_process(gateway_url: str, log_path: Path, taken: set[int]) -> Iterator[str]:
    """A UI of its own, on a free port not in `taken`, for the gateway at `gateway_url`: its address while it
    runs."""
    ui_port = free_port(taken)
    url = f"http://{LOOPBACK}:{ui_port}"
    cmd = [
        sys.executable,
        *("-m", "streamlit", "run", str(REPO_ROOT / "ui" / "app.py")),
        *("--server.address", LOOPBACK, "--server.port", str(ui_port)),
        *("--server.headless", "true", "--browser.gatherUsageStats", "false"),
    ]
    env = {**os.environ, "UI_GATEWAY_URL": gateway_url, "PYTHONPATH": str(REPO_ROOT)}
    with log_path.open("w") as log:
        ui = subprocess.Popen(cmd, env=env, cwd=REPO_ROOT / "ui", stdout=log, stderr=subprocess.STDOUT)
    try:
        health = f"{url}/_stcore/health"
        services.wait_until(
            lambda: httpx.get(health, timeout=2).status_code == 200, "ui", 60, lambda: ui.poll() is None
        )
        yield url
    finally:
        ui.terminate()
        ui.wait(timeout=30)


@pytest.fixture
def ui_before_its_gateway(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A UI of its own whose gateway is not up yet: (the UI's address, the port it expects the gateway on)."""
    taken: set[int] = set()
    gateway_port = free_port(taken)
    with ui_process(f"http://{LOOPBACK}:{gateway_port}", tmp_path / "ui.log", taken) as url:
        yield url, gateway_port


def test_gateway_down_then_back_retry_opens_the_page_asked_for(
    browser: Any, ui_before_its_gateway: tuple[str, int]
) -> None:
    ui_url, gateway_port = ui_before_its_gateway
    page = new_page(browser)
    page.goto(f"{ui_url}/birds")
    page.get_by_text("The classification service is unavailable").wait_for()
    assert page.get_by_text("not reachable").count() == 1
    page.screenshot(path=str(ARTIFACTS / "gateway-down.png"), full_page=True)
    birds = model_entry("birds", "image", ["crow", "robin"], "Which bird is in the photo", max_chars=None)
    spam = model_entry("spam", "text", ["ham", "spam"], "Is this text message spam?", max_chars=40)
    with StubGateway([spam, birds], gateway_port):  # comes up while the page is open: no UI restart
        page.get_by_role("button", name="Retry").click()
        page.get_by_role("heading", name="Which bird is in the photo").wait_for()
        assert page.url == f"{ui_url}/birds"
        page.get_by_role("link", name="Spam").click()  # the catalog's pages, in the navigation
        page.get_by_role("heading", name="Is this text message spam?").wait_for()
    page.close()


@pytest.fixture
def ui_of_a_stub(tmp_path: Path) -> Iterator[str]:
    """A UI of its own on a stub gateway (whose explanations are made up from the input, see `stub_gateway`)."""
    tasks = [
        model_entry("sentiment", "text", ["negative", "positive"], "Movie review sentiment (IMDb)", max_chars=20000),
        # the stub answers every photo with the last label: the running photo below gets "running"
        model_entry("pose", "image", [*sorted(set(POSE_LABELS) - {"running"}), "running"], "Human actions", None),
    ]
    with StubGateway(tasks) as gateway, ui_process(gateway.url, tmp_path / "ui.log", set()) as url:
        yield url


def test_explain_shades_the_words_of_a_review_and_paints_the_photo(browser: Any, ui_of_a_stub: str) -> None:
    page = new_page(browser)
    page.set_viewport_size({"width": 1280, "height": 1200})  # the whole answer in one screenshot
    page.goto(ui_of_a_stub)
    review = "A wonderful film, but the middle drags.<br /><br />Not boring for a second: the best score of the year!"
    page.get_by_label("Text", exact=True).fill(review)
    page.get_by_text("Explain", exact=True).click()
    page.get_by_role("button", name="Classify", exact=True).click()
    page.locator(".explained-text .word").first.wait_for()
    assert page.locator(".explained-text .word.supports").count() == 15
    assert page.locator(".explained-text .word.against").count() == 3  # but, Not, boring
    assert page.locator(".explained-text br").count() == 2  # the review's markup, as line breaks
    page.get_by_text("how much the probability of positive drops").wait_for()
    page.get_by_test_id("stTable").get_by_text("linear").wait_for()  # each blend member's answer
    page.locator("[data-testid=stVegaLiteChart] svg").first.wait_for()  # the page ran to its end
    page.screenshot(path=str(ARTIFACTS / "explain-text-stub.png"), full_page=True)

    page.get_by_role("link", name="Pose").click()
    page.get_by_role("heading", name="Human actions").wait_for()  # not the review page's toggle, still shown
    page.get_by_text("Explain", exact=True).click()
    page.locator("input[type=file]").set_input_files(str(data_dir() / "pose" / "running" / "Image_114.jpg"))
    overlay = page.get_by_test_id("stImage").filter(has_text="What the model looked at").locator("img")
    overlay.wait_for()
    assert overlay.evaluate("image => image.complete && image.naturalWidth") == 224
    page.get_by_text("Red cells support").wait_for()
    page.locator("[data-testid=stVegaLiteChart] svg").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "explain-image-stub.png"), full_page=True)
    page.close()
