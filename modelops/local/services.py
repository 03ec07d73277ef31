"""The local stack's processes: what one service is (`Service`), how one is started, found and stopped, and
`Services`, the supervisor of a stack's services in their order.

Each service is a child process in its own session, with a pid file and a log under the state folder
(`var/` by default), so `make stop` can end exactly what `make run` started, and a second `make run` reuses
services that are still up. The test suite starts the same services through the same functions, on free
ports and in a temporary state folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from contract.catalog import REPO_ROOT
from contract.logs import log_event
from contract.torchserve import TorchServeError
from modelops.local.config import StackConfig, port_open

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Service:
    """One long-running process of the stack: everything starting it, and checking on it, needs to know.

    Its pid file and log are `<run_dir>/<name>.pid` and `<log_dir>/<name>.log`: the name is how `make stop`,
    a restart and the tests find it."""

    name: str
    # how a start-up failure names it ("SeaweedFS S3 not ready after 90s")
    title: str
    command: list[str]
    # added to the supervisor's own environment
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = REPO_ROOT
    # files and folders it needs before it starts; run only when it is started, never when it is reused
    prepare: Callable[[], None] | None = None
    # True once it serves; None: it serves as soon as it runs (the bulk job worker, which only polls)
    ready: Callable[[], bool] | None = None
    ready_timeout_s: float = 60
    # where it answers, for the log's start and reuse events
    url: str | None = None
    # what it listens on, each port with the variable that moves it (`StackConfig.from_env`)
    ports: list[tuple[str, int]] = field(default_factory=list)


# --- one service ---------------------------------------------------------------------------------------


def _pid_file(cfg: StackConfig, name: str) -> Path:
    return cfg.run_dir / f"{name}.pid"


def running_pid(cfg: StackConfig, name: str) -> int | None:
    """The pid recorded for `name` if that process is still alive."""
    path = _pid_file(cfg, name)
    try:
        pid = int(path.read_text().strip())
        _reap(pid)  # an exited child of ours is a zombie that still answers signal 0 until reaped
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        path.unlink(missing_ok=True)
        return None
    except PermissionError:
        return None
    return pid


def start(cfg: StackConfig, service: Service) -> None:
    """Reuse the service if its pid is alive, else prepare it, spawn it and wait until it is ready."""
    if running_pid(cfg, service.name):
        where = {"url": service.url} if service.url else {}
        log_event(logger, "stack.reused", logging.INFO, service=service.name, **where)
        return
    if service.prepare is not None:
        service.prepare()
    pid = _spawn(cfg, service)
    if service.ready is not None:
        wait_until(service.ready, service.title, service.ready_timeout_s, lambda: running_pid(cfg, service.name) == pid)


def _spawn(cfg: StackConfig, service: Service) -> int:
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    cfg.log_dir.mkdir(parents=True, exist_ok=True)
    log_path = cfg.log_dir / f"{service.name}.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            service.command,
            cwd=service.cwd,
            env={**os.environ, **service.env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopping it also stops its children (workers)
        )
    _pid_file(cfg, service.name).write_text(str(proc.pid))
    log_event(logger, "stack.started", service=service.name, pid=proc.pid, log=str(log_path))
    return proc.pid


def stop(cfg: StackConfig, name: str, timeout_s: float = 20.0, group: bool = True) -> bool:
    """SIGTERM the service (its whole process group when `group`), SIGKILL it if it lingers.

    Returns True if something was stopped.
    """
    pid = running_pid(cfg, name)
    if pid is None:
        return False
    send = os.killpg if group else os.kill
    with contextlib.suppress(ProcessLookupError):
        send(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _reap(pid)
        try:
            send(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        send(pid, signal.SIGKILL)
        log_event(logger, "stack.killed", logging.WARNING, service=name, pid=pid)
    _reap(pid)
    _pid_file(cfg, name).unlink(missing_ok=True)
    log_event(logger, "stack.stopped", service=name, pid=pid)
    return True


def _reap(pid: int) -> None:
    """Collect the exit status if `pid` is our own child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def wait_until(check: Callable[[], bool], what: str, timeout_s: float, pid_alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive():
            raise RuntimeError(f"{what} exited during start-up; see its log")
        try:
            if check():
                return
        except (httpx.HTTPError, OSError, TorchServeError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{what} not ready after {timeout_s:.0f}s; see its log")


def answers(url: str) -> Callable[[], bool]:
    """A readiness probe: `url` answers 200."""
    return lambda: httpx.get(url, timeout=2).status_code == 200


# --- a stack of them -----------------------------------------------------------------------------------


class Services:
    """A stack's services in start order: started in that order (each ready before the next starts, since
    each stands on the ones before it), restarted when one dies, stopped in the reverse order.

    `start` can stop part way (`through`) and carry on later, so that work between two services (`make run`
    trains models between S3 and TorchServe) happens in its place."""

    def __init__(self, cfg: StackConfig, services: Sequence[Service]) -> None:
        self.cfg = cfg
        self.services = list(services)
        self._started = 0  # how many of them, from the first, `start` has started

    def ports_taken(self) -> list[str]:
        """The stack's ports that another program listens on, each as a line saying how to move it.

        Checked before anything starts: otherwise the service that cannot bind dies and `make run` reports only
        that it was "not ready after 90s". Ports of this stack's own running services are theirs to hold."""
        return [
            f"port {port} on {self.cfg.host} ({service.name}) is taken by another program: stop it, or set {variable}"
            for service in self.services
            if running_pid(self.cfg, service.name) is None
            for variable, port in service.ports
            if port_open(self.cfg.host, port)
        ]

    def start(self, through: str | None = None) -> None:
        """Start (or reuse) the services not started yet, in order, up to and including `through` (all of them
        when None)."""
        names = [service.name for service in self.services]
        end = len(names) if through is None else names.index(through) + 1
        for service in self.services[self._started : end]:
            start(self.cfg, service)
        self._started = max(self._started, end)

    def restart_dead(self) -> list[str]:
        """Start again, in order, each started service whose process is gone; the names of those restarted."""
        restarted = []
        for service in self.services[: self._started]:
            if not running_pid(self.cfg, service.name):
                log_event(logger, "stack.service_died", logging.ERROR, service=service.name, action="restarting")
                start(self.cfg, service)
                restarted.append(service.name)
        return restarted

    def stop(self) -> list[str]:
        """Stop every one of them that runs (started here or by an earlier `make run`), the last started first;
        the names of those stopped."""
        return [service.name for service in reversed(self.services) if stop(self.cfg, service.name)]
