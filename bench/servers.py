"""The servers the benches drive, found running or started for the run and stopped afterwards: the stack
`make run` starts, a second gateway in front of its TorchServe, and bench-only apps (the peer-style baseline,
the FastAPI floor) under uvicorn."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

from contract.catalog import REPO_ROOT, TaskSpec
from gateway.settings import Settings
from modelops.local import services, web
from modelops.local.config import StackConfig, free_port, port_open


@contextmanager
def uvicorn_app(
    app: str, what: str, env: dict[str, str] | None = None, flags: list[str] | None = None, timeout_s: float = 120
) -> Iterator[tuple[str, psutil.Process]]:
    """A bench-only ASGI app (`module:attribute`) served by uvicorn on a free port until the block ends: its URL
    and process."""
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", app, "--port", str(port), "--log-level", "warning", *(flags or [])]
    process = subprocess.Popen(cmd, cwd=REPO_ROOT, env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + timeout_s
        while not port_open("127.0.0.1", port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", psutil.Process(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def peer_server(spec: TaskSpec, archive: Path) -> Iterator[str]:
    """The peer-style baseline app on a free port, serving the same fine-tuned weights."""
    with tempfile.TemporaryDirectory(prefix=f"peer-{spec.task}-") as unpacked:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(unpacked)
        peer = uvicorn_app("bench.peer_app:app", f"the peer baseline for {spec.task}", {"PEER_MODEL_DIR": unpacked})
        with peer as (url, _):
            yield url


@contextmanager
def running_stack(cfg: StackConfig) -> Iterator[None]:
    """Use the stack `make run` started; if none answers, start one and stop it afterwards."""

    def ready() -> bool:
        try:
            return httpx.get(f"{cfg.gateway_url}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    if ready():
        yield
        return
    print("no ready stack: starting one with `python -m modelops run`", file=sys.stderr)
    process = subprocess.Popen([sys.executable, "-m", "modelops", "run"], cwd=REPO_ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + 3600
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the stack did not become ready; see `make run` output")
            time.sleep(5)
        yield
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=120)


def coalesce_window(gateway: psutil.Process) -> float:
    """The coalescing window a running gateway was started with (its environment, else the settings' default):
    the results name each gateway path by it, so a comparison says which side coalesced."""
    configured = gateway.environ().get("GATEWAY_COALESCE_WINDOW_MS")
    return float(configured or Settings.model_fields["coalesce_window_ms"].default)


@contextmanager
def second_gateway(
    cfg: StackConfig, extra_env: dict[str, str] | None = None, uvicorn_args: list[str] | None = None
) -> Iterator[tuple[str, psutil.Process]]:
    """A second gateway in front of the same TorchServe (`web.second_gateway`), with its own settings or
    uvicorn flags: its URL and process, whose CPU time the bench reads."""
    with web.second_gateway(cfg, extra_env, uvicorn_args or ()) as second:
        pid = services.running_pid(second, "gateway")
        assert pid is not None, "the second gateway did not start"
        yield second.gateway_url, psutil.Process(pid)
