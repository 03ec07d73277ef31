"""`make run`: the whole local stack in the foreground, answering within minutes on a fresh clone.

0. a clone without the data folder first downloads the built-ins' public originals (pinned checksums,
   `modelops.datasets`); offline or refused, it says so in one line and serves what it can;
1. S3; then every task with nothing published gets its `quick` version (heads on frozen backbones: seconds to a
   minute or two each), trained in a child process, published and served like any version;
2. TorchServe, sync, gateway and UI: the URLs are printed as soon as the first answers are possible;
3. in the background, a second child trains the better (`fast`) version of every task whose published default
   was built by a lower recipe, and publishes it: the sync loop switches to it with no failed request. A
   second `make run` serves the best published version at once and trains only what is still missing.

The terminal gets a short human view (a line per stage, progress with an estimate of the time left); the JSON
logs go to `var/log/` (`supervisor.log`, `build.log`, and each service's). Children train, so this process,
which stays up for the stack's lifetime, never holds torch's memory.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Collection
from pathlib import Path
from typing import IO, Any

from contract.catalog import DEFAULT_RECIPE, SERVED_TASKS_ENV, TaskSpec
from contract.logs import log_event
from contract.progress import PROGRESS_DIR_ENV, read_progress
from modelops.local import s3, stack, torchserve
from modelops.local.config import StackConfig
from modelops.local.services import running_pid
from modelops.serve.sync import Syncer
from modelops.store.s3 import ModelStore
from modelops.store.upgrades import due_for_upgrade

logger = logging.getLogger(__name__)

QUICK = "quick"
ADD_YOUR_OWN = "`.venv/bin/python -m modelops task add NAME --data FILE` (docs/own-classifier.md)"
PROGRESS_DIR = "build-progress"


def key_rotation_period_s(config: Path) -> float:
    """Half of TorchServe's key lifetime (`token_expiration_min`): rotating then, no reader holds an expired key."""
    for line in config.read_text().splitlines():
        if line.strip().startswith("token_expiration_min="):
            return float(line.split("=", 1)[1]) * 60 / 2
    return 60.0 * 60 / 2


def _bar(fraction: float, width: int = 20) -> str:
    filled = round(fraction * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


class Terminal:
    """The human view: one line per event, stamped with the time since `make run` started; a task's training
    progress at most every `every_s` seconds, when it moved."""

    # stages too short to be worth a line of their own
    QUIET = frozenset({"queued", "preparing", "publishing"})

    def __init__(self, out: IO[str], every_s: float = 60.0, started_at: float | None = None) -> None:
        """`started_at`: the wall-clock time (epoch seconds) the clock counts from, `make run`'s own start."""
        self.out = out
        self.started = time.monotonic() - (time.time() - started_at if started_at else 0.0)
        self.every_s = every_s
        self._last: dict[str, tuple[float, str]] = {}
        self._fraction: dict[str, float | None] = {}

    def say(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        self.out.write(f"[{int(elapsed // 60):2d}:{int(elapsed % 60):02d}] {text}\n")
        self.out.flush()

    def progress(self, entries: dict[str, dict[str, Any]]) -> None:
        """Lines for the tasks whose build moved: a new stage at once, steps of a stage every `every_s`."""
        for task, entry in entries.items():
            stage = str(entry.get("stage"))
            fraction = entry.get("progress")
            key = f"{entry.get('recipe')}:{stage}"
            last_at, last_key = self._last.get(task, (0.0, ""))
            stepped = fraction is not None and fraction != self._fraction.get(task)
            moved = key != last_key or (stepped and time.monotonic() - last_at >= self.every_s)
            if not moved or stage in self.QUIET or (key == last_key and stage in ("done", "failed")):
                continue
            self._last[task] = (time.monotonic(), key)
            self._fraction[task] = fraction
            self.say(f"  {task:<12} {entry.get('recipe')} version: {self._describe(entry)}")

    @staticmethod
    def _describe(entry: dict[str, Any]) -> str:
        stage = entry.get("stage")
        if stage == "done":
            accuracy = entry.get("accuracy")
            return "published" + (f", validation accuracy {accuracy:.3f}" if accuracy is not None else "")
        if stage == "failed":
            return f"failed ({entry.get('reason', 'see var/log/build.log')})"
        fraction, eta = entry.get("progress"), entry.get("eta_s")
        if fraction is None:
            return f"{stage}..."
        left = f", about {_minutes(eta)} left" if eta else ""
        return f"{stage} {_bar(fraction)} {fraction:4.0%}{left}"


class Supervisor:
    """Starts the stack's services (`stack.services`, in their order, the missing models trained between S3 and
    TorchServe), keeps them up, and brings the stack to the better versions in the background."""

    def __init__(
        self,
        cfg: StackConfig,
        catalog: dict[str, TaskSpec],
        recipe: str,
        data: Path,
        sync_interval_s: float,
        terminal: Terminal,
    ) -> None:
        self.cfg = cfg
        self.catalog = catalog
        self.recipe = recipe
        self.data = data
        self.sync_interval_s = sync_interval_s
        self.terminal = terminal
        self.progress_dir = cfg.run_dir / PROGRESS_DIR
        self.upgrade: subprocess.Popen[bytes] | None = None
        self.services = stack.services(cfg, {"GATEWAY_TRAINING_STATUS_DIR": str(self.progress_dir)})

    def _build(self, recipe: str, *extra: str) -> list[str]:
        return [sys.executable, "-m", "modelops", "build", "--recipe", recipe, "--data", str(self.data), *extra]

    def _child_env(self) -> dict[str, str]:
        return {**os.environ, PROGRESS_DIR_ENV: str(self.progress_dir), "LOG_LEVEL": "INFO"}

    def _log(self) -> IO[bytes]:
        self.cfg.log_dir.mkdir(parents=True, exist_ok=True)
        return (self.cfg.log_dir / "build.log").open("ab")

    def _build_now(self, tasks: list[str], syncer: Syncer) -> None:
        """Each task's quick version in its own child process, side by side (one core each does most of it),
        the stack already up: each is synced, and so answered, as soon as its own build has published it. The
        terminal follows their progress; a build that fails leaves its task unserved and the others serving."""
        with self._log() as log:
            children = {
                task: subprocess.Popen(
                    self._build(QUICK, "--task", task), stdout=log, stderr=log, env=self._child_env()
                )
                for task in tasks
            }
            while children:
                time.sleep(1)
                self.terminal.progress(read_progress(self.progress_dir))
                for task, child in list(children.items()):
                    if child.poll() is None:
                        continue
                    del children[task]
                    if child.returncode == 0:
                        syncer.run_once()
                        self.terminal.say(f"  {task:<12} answering at {self.cfg.gateway_url}{self.catalog[task].route}")
                    else:
                        self.terminal.say(
                            f"  {task:<12} training its quick version failed (var/log/build.log): not served; "
                            "the other tasks are"
                        )

    def _has_data(self, spec: TaskSpec) -> bool:
        return all((self.data / path).is_file() for path in (spec.dataset, *spec.extra_datasets))

    def _fetch_lacking(self) -> None:
        """Download the public originals of the catalog's tasks that have no data here (a clone without the
        data folder). Offline, behind a proxy or refused by a checksum: one line, and the stack goes on without
        them."""
        lacking_data = [spec for spec in self.catalog.values() if not self._has_data(spec)]
        if not lacking_data:
            return
        # imported only when needed: pooch, pyarrow and Pillow would double this long-lived process's memory
        from modelops.datasets.fetch import ORIGINALS_CACHE, FetchError, fetch, lacking, load_originals

        wanted = {path for spec in lacking_data for path in (spec.dataset, *spec.extra_datasets)}
        try:
            originals = lacking(load_originals(), self.data, wanted)
            if originals:
                fetch(originals, self.data, self.cfg.state_dir / ORIGINALS_CACHE, say=self.terminal.say)
        except FetchError as exc:
            self.terminal.say(f"data: {exc}")

    def _serve_what_it_has(self, published: Collection[str]) -> None:
        """Leave out the catalog tasks with neither a published version nor data to train one (a clone without
        the data folder, offline): the rest of the stack serves, tasks added with `task add` included. `$TASKS`
        names the served ones when set; the choice is passed on to the gateway and the builds through it."""
        lacking = [s.task for s in self.catalog.values() if s.model_name not in published and not self._has_data(s)]
        if not lacking:
            return
        if SERVED_TASKS_ENV in os.environ:
            raise SystemExit(
                f"{SERVED_TASKS_ENV} names {', '.join(lacking)}, with no published version and no data in "
                f"{self.data} to train one: set DATA_DIR to the data folder, or leave them out of {SERVED_TASKS_ENV}"
            )
        self.catalog = {name: spec for name, spec in self.catalog.items() if name not in lacking}
        os.environ[SERVED_TASKS_ENV] = ",".join(self.catalog)
        self.terminal.say(
            f"models: no data for {', '.join(lacking)} in {self.data} (what it is: docs/models.md#training-data): "
            "not served"
        )

    def start(self) -> Syncer:
        say = self.terminal.say
        self.services.start(through="s3")
        for key, value in s3.local_s3_env(self.cfg).items():
            os.environ.setdefault(key, value)
        say(f"S3 ready at {self.cfg.s3_url}")
        shutil.rmtree(self.progress_dir, ignore_errors=True)
        store = ModelStore()
        store.ensure_bucket()
        published = store.read_manifest().models
        self._fetch_lacking()
        self._serve_what_it_has(published)
        missing = [spec.task for spec in self.catalog.values() if spec.model_name not in published]
        if not missing and self.catalog:
            say("models: every task is published; serving the published versions")
        self.services.start(through="torchserve")
        syncer = torchserve.syncer(self.cfg, self.catalog, store)
        syncer.run_once()
        self.services.start()
        cfg = self.cfg
        routes = "  ".join(f"{cfg.gateway_url}{spec.route}" for spec in self.catalog.values())
        say(f"serving: web UI {cfg.ui_url}   API {cfg.gateway_url} (docs: {cfg.gateway_url}/docs)")
        say(f"  routes: {routes}" if routes else f"  no built-in task: add your own with {ADD_YOUR_OWN}")
        say("  Ctrl-C (or `make stop` in another terminal) stops everything; logs and state are in var/")
        if missing:
            say(
                f"models: training a quick version of {', '.join(missing)} side by side (log: var/log/build.log); "
                "each route answers as soon as its own is published"
            )
            self._build_now(missing, syncer)
        due = [spec.task for spec in due_for_upgrade(self.catalog, self.recipe, store) if self._has_data(spec)]
        if due:
            say(
                f"better ({self.recipe}) versions of {', '.join(due)}: training in the background, one after the other;"
            )
            say("  each is served as soon as it is published")
            with self._log() as log:
                command = self._build(self.recipe, "--upgrade")
                self.upgrade = subprocess.Popen(command, stdout=log, stderr=log, env=self._child_env())
        return syncer

    def supervise(self, syncer: Syncer) -> None:
        """Restart what died, sync on the interval (and at once after the background build), rotate keys.

        A restarted TorchServe has no models and fresh keys: it is synced at once, and its keys rotate a full
        period later."""
        rotate_every = key_rotation_period_s(torchserve.write_config(self.cfg))
        last_rotation = time.monotonic()
        next_sync = time.monotonic() + syncer.next_delay(self.sync_interval_s)
        while True:
            time.sleep(5)
            if "torchserve" in self.services.restart_dead():
                next_sync = last_rotation = time.monotonic()
            if self.upgrade is not None:
                self.terminal.progress(read_progress(self.progress_dir))
                if self.upgrade.poll() is not None:
                    code, self.upgrade = self.upgrade.returncode, None
                    next_sync = time.monotonic()
                    self.terminal.say(
                        "better versions: all published; the stack switches to them now"
                        if code == 0
                        else "better versions: the background build failed (var/log/build.log); the quick ones serve"
                    )
            if time.monotonic() >= next_sync:
                syncer.run_once()
                next_sync = time.monotonic() + syncer.next_delay(self.sync_interval_s)
            if time.monotonic() - last_rotation > rotate_every:
                syncer.mgmt.rotate_keys()
                last_rotation = time.monotonic()

    def stop(self) -> None:
        if self.upgrade is not None and self.upgrade.poll() is None:
            self.upgrade.terminate()
            try:
                self.upgrade.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.upgrade.kill()
        self.services.stop()


def run(cfg: StackConfig, catalog: dict[str, TaskSpec], recipe: str, data: Path, sync_interval_s: float) -> None:
    """The foreground `make run`: until Ctrl-C or `make stop` (SIGTERM), which stop everything it started."""
    if running_pid(cfg, "supervisor"):
        raise SystemExit("the stack is already supervised by another `make run`; use `make stop` first")
    started_at = float(os.environ.get("MAKE_RUN_STARTED", "0")) or None  # the Makefile's clock, install included
    terminal = Terminal(sys.stdout, started_at=started_at)
    supervisor = Supervisor(cfg, catalog, recipe or DEFAULT_RECIPE, data, sync_interval_s, terminal)
    problems = supervisor.services.ports_taken()
    if shutil.which("java") is None:
        problems.append(
            "TorchServe needs Java 17 and `java` is not on PATH: sudo apt-get install openjdk-17-jre-headless"
        )
    if problems:  # found before minutes of training, not after
        raise SystemExit("\n".join(["make run cannot start:", *problems]))
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    (cfg.run_dir / "supervisor.pid").write_text(str(os.getpid()))

    def shutdown(signum: int, _frame: object) -> None:
        log_event(logger, "stack.shutdown", signal=signal.Signals(signum).name)
        supervisor.terminal.say("stopping")
        supervisor.stop()
        (cfg.run_dir / "supervisor.pid").unlink(missing_ok=True)
        raise SystemExit(0)

    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGTERM, shutdown)
    supervisor.supervise(supervisor.start())
