"""The local stack's start-up checks, without starting anything: a port another program holds is named with the
variable that moves it, and the S3 readiness probe never range-reads an empty object."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from modelops.local import stack


def _free_config(tmp_path: Path) -> stack.StackConfig:
    """A stack whose every port is free now (each one picked by the OS)."""
    cfg = stack.StackConfig(state_dir=tmp_path / "var")
    for name in ("gateway_port", "ui_port", "inference_port", "management_port", "metrics_port"):
        setattr(cfg, name, stack.free_port())
    cfg.grpc_inference_port, cfg.grpc_management_port, cfg.s3_port = (stack.free_port() for _ in range(3))
    cfg.s3_internal_ports = {"master": stack.free_port()}
    return cfg


def test_a_port_held_by_another_program_is_named_with_its_variable(tmp_path: Path) -> None:
    cfg = _free_config(tmp_path)
    cfg.s3_internal_ports = {}  # their + 10000 twins may be anything on the machine running the test
    assert stack.ports_taken(cfg) == []
    with socket.socket() as holder:
        holder.bind((cfg.host, 0))
        holder.listen()
        cfg.gateway_port = holder.getsockname()[1]
        assert stack.ports_taken(cfg) == [
            f"port {cfg.gateway_port} on 127.0.0.1 (gateway) is taken by another program: stop it, or set "
            "STACK_GATEWAY_PORT"
        ]


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
    assert stack.s3_reads(bucket)
    assert bucket.read == ["manifest.json"]
    only_markers = _Bucket([("jobs/active/anonymous/job1", 0)])
    assert stack.s3_reads(only_markers)
    assert only_markers.read == []
