"""A user's own classifiers on the real stack: a 3-label text task from a CSV and an image task from a folder
(both written here in the user-facing formats) are added while the running stack keeps answering, routed by
the gateway without a restart (its API, its OpenAPI document and a client generated from it, the UI's pages in
a browser), then removed, with no request to the other tasks failing throughout."""

from __future__ import annotations

import csv
import importlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from contract.catalog import REPO_ROOT
from modelops.tasks.manage import DataOptions, add_task, remove_task
from modelops.tasks.rollout import apply_locally
from modelops.train.data import data_dir
from tests.conftest import Stack
from tests.integration.test_generated_client import _generate
from tests.ui.test_browser import ARTIFACTS, browser, new_page, ui_url  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration

PACKAGE = "generated_own_tasks_client"
TEXT_TASK, IMAGE_TASK = "inbox", "activity"
PER_LABEL = 24


def _rows(path: Path, text: str, keep: Any, limit: int) -> list[str]:
    """The first `limit` distinct short texts of the file whose row `keep` accepts."""
    with path.open(encoding="utf-8", newline="") as fh:
        found = [row[text] for row in csv.DictReader(fh) if keep(row) and len(row[text]) < 600]
    return list(dict.fromkeys(found))[:limit]


@pytest.fixture(scope="module")
def inbox_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three labels from three real sources, under the user's own column names, one text spanning lines."""
    shared = data_dir()
    tweets = shared / "disaster" / "tweets.csv"
    rows = [
        *((t, "film_review") for t in _rows(shared / "imdb" / "reviews.csv", "text", lambda r: True, PER_LABEL)),
        *((t, "emergency") for t in _rows(tweets, "text", lambda r: r["target"] == "1", PER_LABEL)),
        *((t, "chatter") for t in _rows(tweets, "text", lambda r: r["target"] == "0", PER_LABEL)),
    ]
    random.Random(3).shuffle(rows)
    rows[0] = (rows[0][0] + "\nwritten over\ntwo more lines", rows[0][1])
    path = tmp_path_factory.mktemp("user") / "inbox.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([("message", "queue"), *rows])
    return path


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ImageFolder layout: one sub-folder per label, photos of two actions from the shared data."""
    root = tmp_path_factory.mktemp("user") / "photos"
    for source, label in (("running", "run"), ("sleeping", "sleep")):
        (root / label).mkdir(parents=True)
        for photo in sorted((data_dir() / "pose" / source).glob("*.jpg"))[:PER_LABEL]:
            (root / label / photo.name).write_bytes(photo.read_bytes())
    return root


class Load:
    """Requests to the catalog's tasks in a background thread while tasks are added and removed."""

    def __init__(self, gateway: str) -> None:
        self.gateway = gateway
        self.statuses: Counter[int] = Counter()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        photo = next((data_dir() / "pose" / "running").glob("*.jpg")).read_bytes()
        with httpx.Client(base_url=self.gateway, timeout=60) as http:
            deadline = time.monotonic() + 900  # bounded even if the test never stops it
            while not self._stop.is_set() and time.monotonic() < deadline:
                for response in (
                    http.post("/v1/disaster", json={"text": "Flood waters rising near the bridge"}),
                    http.post("/v1/pose", files={"image": ("p.jpg", photo, "image/jpeg")}),
                ):
                    self.statuses[response.status_code] += 1
                    if response.status_code != 200:
                        self.errors.append(response.text[:300])
                time.sleep(0.05)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)


@pytest.fixture(scope="module")
def added(live_stack: Stack, inbox_csv: Path, photo_folder: Path) -> Iterator[dict[str, Any]]:
    """Both tasks added (and served) while the load runs; removed again afterwards, leaving the stack as found."""
    said: list[str] = []
    work = live_stack.cfg.state_dir / "tasks"
    timings: dict[str, float] = {}
    with Load(live_stack.gateway) as load:
        for name, data, options in (
            (TEXT_TASK, inbox_csv, DataOptions(text_column="message", label_column="queue", max_chars=2000)),
            (IMAGE_TASK, photo_folder, DataOptions()),
        ):
            started = time.monotonic()
            add_task(name, data, options, live_stack.catalog, live_stack.store, work, said.append)
            assert apply_locally(live_stack.cfg, live_stack.catalog, live_stack.store, name, True, said.append)
            timings[name] = time.monotonic() - started
        yield {"load": load, "said": said, "timings": timings}
        for name in (TEXT_TASK, IMAGE_TASK):
            if name in {spec["task"] for spec in _models(live_stack.gateway)}:
                remove_task(name, live_stack.catalog, live_stack.store)
                apply_locally(live_stack.cfg, live_stack.catalog, live_stack.store, name, False, said.append)


def _models(gateway: str) -> list[dict[str, Any]]:
    return list(httpx.get(f"{gateway}/v1/models", timeout=30).json()["models"])


def test_added_tasks_answer_through_the_gateway(added: dict[str, Any], live_stack: Stack) -> None:
    print(f"added in {added['timings']}; said: {added['said']}")
    listed = {m["task"]: m for m in _models(live_stack.gateway)}
    assert listed[TEXT_TASK]["labels"] == ["chatter", "emergency", "film_review"]
    assert listed[TEXT_TASK]["kind"] == "text"
    # served: a worker ready, or registered and scaled to zero (an added task's default), its next call starts one
    assert listed[TEXT_TASK]["loaded"]["ready"] or listed[TEXT_TASK]["scaling"]["state"] == "cold"
    assert listed[IMAGE_TASK]["labels"] == ["run", "sleep"]
    with httpx.Client(base_url=live_stack.gateway, timeout=60) as http:
        one = http.post(f"/v1/{TEXT_TASK}", json={"text": "The acting was wonderful and the plot kept me guessing"})
        assert one.status_code == 200, one.text
        assert one.json()["task"] == TEXT_TASK
        assert set(one.json()["scores"]) == {"chatter", "emergency", "film_review"}
        many = http.post(f"/v1/{TEXT_TASK}", json={"texts": ["Earthquake hits the coast, houses collapsed", "lol"]})
        assert [r["label"] in listed[TEXT_TASK]["labels"] for r in many.json()["results"]] == [True, True]
        too_long = http.post(f"/v1/{TEXT_TASK}", json={"text": "x" * 2001})
        assert too_long.status_code == 422
        assert "2000" in too_long.json()["error"]["message"]
        explained = http.post(f"/v1/{TEXT_TASK}/explain", json={"text": "Flood warning for the whole valley"})
        assert explained.status_code == 200, explained.text
        assert explained.json()["explanation"]["words"]
        photo = next((data_dir() / "pose" / "sleeping").glob("*.jpg"))
        answer = http.post(f"/v1/{IMAGE_TASK}", files={"image": (photo.name, photo.read_bytes(), "image/jpeg")})
        assert answer.status_code == 200, answer.text
        assert [item["label"] for item in answer.json()["top_k"]] in (["sleep", "run"], ["run", "sleep"])
        card = http.get(f"/v1/models/{TEXT_TASK}").json()["card"]
    cross_validation = card["cross_validation"]
    assert cross_validation["folds"] == 5
    assert cross_validation["rows"] == 3 * PER_LABEL
    # three labels from three different sources: far above always answering the commonest one
    assert cross_validation["baselines"]["majority_class"]["difference_ci95"][0] > 0
    assert card["validation"]["accuracy"] == pytest.approx(
        cross_validation["baselines"]["majority_class"]["accuracy"]
        + cross_validation["baselines"]["majority_class"]["difference"],
        abs=1e-3,
    )


@pytest.fixture
def sdk(
    added: dict[str, Any], live_stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ModuleType]:
    document = httpx.get(f"{live_stack.gateway}/openapi.json", timeout=30).json()
    assert f"/v1/{TEXT_TASK}" in document["paths"]
    assert f"/v1/{IMAGE_TASK}/explain" in document["paths"]
    output = _generate(document, tmp_path, PACKAGE)
    assert "will not be generated" not in output, output
    monkeypatch.syspath_prepend(str(tmp_path))
    yield importlib.import_module(PACKAGE)
    for name in [name for name in sys.modules if name == PACKAGE or name.startswith(f"{PACKAGE}.")]:
        del sys.modules[name]


def test_a_client_generated_after_the_add_calls_the_new_tasks(sdk: ModuleType, live_stack: Stack) -> None:
    classify = importlib.import_module(f"{PACKAGE}.api.classify.classify_{TEXT_TASK}")
    models = importlib.import_module(f"{PACKAGE}.models")
    with sdk.Client(base_url=live_stack.gateway, timeout=httpx.Timeout(60)) as client:
        answer = classify.sync_detailed(client=client, body=models.InboxText(text="Wildfire forces evacuations"))
    assert answer.status_code == 200, answer.content
    assert answer.parsed.label in ("chatter", "emergency", "film_review")


def test_the_ui_shows_a_page_per_added_task(added: dict[str, Any], browser: Any, ui_url: str) -> None:  # noqa: F811
    page = new_page(browser)
    try:
        page.goto(f"{ui_url}/{TEXT_TASK}")
        page.get_by_role("heading", name="Inbox: chatter, emergency, film_review").wait_for()
        page.get_by_label("Text", exact=True).fill("Tornado warning: take shelter now")
        page.get_by_role("button", name="Classify", exact=True).click()
        page.get_by_text("model inbox version").wait_for()
        page.screenshot(path=str(ARTIFACTS / "own-task-text.png"), full_page=True)
        page.goto(f"{ui_url}/{IMAGE_TASK}")
        page.get_by_role("heading", name="Activity: run, sleep").wait_for()
        page.screenshot(path=str(ARTIFACTS / "own-task-image.png"), full_page=True)
    finally:
        page.close()


def _modelops(live_stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m modelops ARGS` as a user runs it, against the test stack's S3 bucket."""
    env = {
        **os.environ,
        "MODEL_BUCKET": live_stack.store.location.bucket,
        "MODEL_PREFIX": live_stack.store.location.prefix,
    }
    command = [sys.executable, "-m", "modelops", *args]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_rollback_takes_an_added_task_by_name(added: dict[str, Any], live_stack: Stack) -> None:
    """`modelops rollback NAME` knows the tasks `task add` published, not only the catalog's (here to the version
    it serves: one build has no earlier version to go back to)."""
    version = live_stack.store.read_manifest().models[TEXT_TASK].default
    finished = _modelops(live_stack, "rollback", TEXT_TASK, version)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert f"{TEXT_TASK}: default is now {version}" in finished.stdout


def test_a_removed_task_loses_its_routes_and_the_others_kept_answering(
    added: dict[str, Any], live_stack: Stack
) -> None:
    remove_task(IMAGE_TASK, live_stack.catalog, live_stack.store)
    assert apply_locally(live_stack.cfg, live_stack.catalog, live_stack.store, IMAGE_TASK, False, print)
    gone = httpx.post(f"{live_stack.gateway}/v1/{IMAGE_TASK}", json={"image_base64": ""}, timeout=30)
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "not_found"
    assert f"/v1/{IMAGE_TASK}" not in httpx.get(f"{live_stack.gateway}/openapi.json", timeout=30).json()["paths"]
    assert not list(live_stack.cfg.model_store.glob(f"{IMAGE_TASK}-*.mar"))
    assert (
        httpx.post(f"{live_stack.gateway}/v1/{TEXT_TASK}", json={"text": "still here"}, timeout=30).status_code == 200
    )
    load = added["load"]
    time.sleep(1)
    print(f"load while adding and removing: {dict(load.statuses)}")
    assert load.statuses[200] > 20
    assert set(load.statuses) == {200}, load.errors[:5]


def test_the_command_refuses_bad_data_and_publishes_nothing(live_stack: Stack, tmp_path: Path) -> None:
    bad = tmp_path / "tickets.csv"
    bad.write_text("message,queue\nplease refund me,billing\n,billing\nmy card was charged twice,\n", encoding="utf-8")
    before = live_stack.store.read_manifest()
    finished = _modelops(
        live_stack, "task", "add", "tickets", "--data", str(bad), "--text-column", "message", "--label-column", "queue"
    )
    assert finished.returncode == 1, finished.stdout + finished.stderr
    assert finished.stdout.splitlines() == [
        "error: tickets.csv, line 3: the 'message' cell is empty. Fill it in or delete the row",
        "error: tickets.csv, line 4: the 'queue' cell is empty. Give the row its label or delete the row",
        "error: tickets.csv: only one label ('billing') in 1 row. A classifier needs examples of two labels or more",
    ]
    assert (
        finished.stderr.strip().splitlines()[-1] == "error: 3 problem(s) to fix first; nothing was trained or published"
    )
    assert live_stack.store.read_manifest() == before
    name_clash = _modelops(live_stack, "task", "add", "models", "--data", str(bad))
    assert name_clash.returncode == 1
    assert "error: task name 'models': the name is taken by the API or the UI. Choose another" in name_clash.stdout
    assert json.loads(json.dumps(live_stack.store.read_manifest().model_dump())) == before.model_dump()
