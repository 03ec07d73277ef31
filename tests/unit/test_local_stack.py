"""The local stack without its real services: the start-up checks (a port another program holds is named with
the variable that moves it, the S3 readiness probe never range-reads an empty object), and the supervisor of
services (`Services`) driving tiny fake ones: Python sleepers and `http.server`s on ports the OS picks."""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelops.local import stack
from modelops.local.config import StackConfig, free_port
from modelops.local.s3 import local_s3_env, s3_reads
from modelops.local.services import Service, Services, answers, running_pid, start, stop
from tests.conftest import make_stack_config


def _free_config(tmp_path: Path) -> StackConfig:
    """A stack whose every port is free now (each one picked by the OS, SeaweedFS's with their gRPC twins)."""
    cfg = make_stack_config(tmp_path)
    cfg.ui_port = free_port()
    return cfg


def test_a_port_held_by_another_program_is_named_with_its_variable(tmp_path: Path) -> None:
    cfg = _free_config(tmp_path)
    assert stack.services(cfg).ports_taken() == []
    with socket.socket() as holder:
        holder.bind((cfg.host, 0))
        holder.listen()
        cfg.gateway_port = holder.getsockname()[1]
        assert stack.services(cfg).ports_taken() == [
            f"port {cfg.gateway_port} on 127.0.0.1 (gateway) is taken by another program: stop it, or set "
            "STACK_GATEWAY_PORT"
        ]


def test_the_stack_starts_s3_then_torchserve_then_the_gateway_then_what_calls_it(tmp_path: Path) -> None:
    services = stack.services(_free_config(tmp_path))
    assert [service.name for service in services.services] == ["s3", "torchserve", "gateway", "ui", "jobs"]


class _Bucket:
    """A boto3 S3 client's three calls the probe makes, over one bucket of (key, size) objects."""

    def __init__(self, objects: list[tuple[str, int]]) -> None:
        self.objects = objects
        self.read: list[str] = []

    def list_buckets(self) -> dict[str, Any]:
        return {"Buckets": [{"Name": "models"}]}

    def list_objects_v2(self, Bucket: str, MaxKeys: int) -> dict[str, Any]:
        return {"Contents": [{"Key": key, "Size": size} for key, size in self.objects[:MaxKeys]]}

    def get_object(self, Bucket: str, Key: str, Range: str) -> dict[str, Any]:
        self.read.append(Key)
        return {"Body": _Body()}


class _Body:
    def read(self) -> bytes:
        return b"x"


def test_the_s3_probe_reads_the_first_object_that_has_bytes() -> None:
    bucket = _Bucket([("jobs/active/anonymous/job1", 0), ("manifest.json", 120)])
    assert s3_reads(bucket)
    assert bucket.read == ["manifest.json"]
    only_markers = _Bucket([("jobs/active/anonymous/job1", 0)])
    assert s3_reads(only_markers)
    assert only_markers.read == []


# --- the supervisor, on fake services ------------------------------------------------------------------


def _web(name: str, **changes: Any) -> Service:
    """A fake web service: Python's http.server on a free port, ready once it answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    return Service(name, name, command, ready=answers(url), ready_timeout_s=20, url=url, **changes)


def _sleeper(name: str, code: str = "import time; time.sleep(600)", **changes: Any) -> Service:
    return Service(name, name, [sys.executable, "-c", code], **changes)


MakeServices = Callable[..., Services]


@pytest.fixture
def cfg(tmp_path: Path) -> StackConfig:
    return StackConfig(state_dir=tmp_path / "var")


@pytest.fixture
def services(cfg: StackConfig) -> Iterator[MakeServices]:
    """`Services` of the test's fakes, each stopped at the end even when the test fails."""
    made: list[Services] = []

    def make(*listed: Service) -> Services:
        made.append(Services(cfg, listed))
        return made[-1]

    yield make
    for group in made:
        group.stop()


def test_services_start_in_order_each_ready_before_the_next_and_stop_the_other_way(
    cfg: StackConfig, services: MakeServices
) -> None:
    order: list[str] = []
    web = _web("web", prepare=lambda: order.append("web"))
    group = services(_sleeper("first", prepare=lambda: order.append("first")), web, _sleeper("last"))
    group.start(through="web")
    assert order == ["first", "web"]
    assert answers(str(web.url))()
    assert running_pid(cfg, "last") is None
    group.start()
    assert all(running_pid(cfg, name) for name in ("first", "web", "last"))
    assert (cfg.log_dir / "web.log").exists()
    assert group.stop() == ["last", "web", "first"]
    assert not any(running_pid(cfg, name) for name in ("first", "web", "last"))


def test_a_running_service_is_reused_and_not_prepared_again(cfg: StackConfig, services: MakeServices) -> None:
    prepared: list[str] = []
    sleeper = _sleeper("sleeper", prepare=lambda: prepared.append("sleeper"))
    services(sleeper).start()
    pid = running_pid(cfg, "sleeper")
    services(sleeper).start()  # a second `make run` beside the first one's services
    assert running_pid(cfg, "sleeper") == pid
    assert prepared == ["sleeper"]


def test_a_dead_service_is_restarted_and_the_others_are_left_alone(cfg: StackConfig, services: MakeServices) -> None:
    group = services(_sleeper("steady"), _web("web"))
    group.start()
    steady, web = running_pid(cfg, "steady"), running_pid(cfg, "web")
    assert group.restart_dead() == []
    assert web is not None
    os.killpg(web, signal.SIGKILL)
    os.waitpid(web, 0)  # gone, as the supervisor finds it on its next round
    assert group.restart_dead() == ["web"]
    assert running_pid(cfg, "web") not in (None, web)
    assert answers(str(group.services[1].url))()
    assert running_pid(cfg, "steady") == steady


def test_a_service_that_exits_during_start_up_is_reported_with_its_log(cfg: StackConfig) -> None:
    crashing = _sleeper("crashing", "raise SystemExit(3)", ready=lambda: False)
    with pytest.raises(RuntimeError, match="crashing exited during start-up; see its log"):
        start(cfg, crashing)


def test_a_service_never_ready_is_reported_after_its_timeout(cfg: StackConfig) -> None:
    slow = _sleeper("slow", ready=lambda: False, ready_timeout_s=1)
    try:
        with pytest.raises(RuntimeError, match="slow not ready after 1s; see its log"):
            start(cfg, slow)
    finally:
        assert stop(cfg, "slow")


def test_the_s3_env_file_follows_the_port_s3_starts_on_and_keeps_its_credentials(tmp_path: Path) -> None:
    """A `make run` with another STACK_S3_PORT than the first one: the clients reading var/local-s3.env must
    find S3 where it now listens; a command merely reading the file (another port in its env) changes nothing."""
    first = StackConfig(state_dir=tmp_path, s3_port=8333)
    created = local_s3_env(first)
    assert created["AWS_ENDPOINT_URL"] == "http://127.0.0.1:8333"
    moved = StackConfig(state_dir=tmp_path, s3_port=9444)
    assert local_s3_env(moved) == created  # not starting S3: the file stays as it is
    started = local_s3_env(moved, starting=True)
    assert started["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9444"
    assert started["AWS_SECRET_ACCESS_KEY"] == created["AWS_SECRET_ACCESS_KEY"]
    assert local_s3_env(first) == started  # what every later reader gets
