"""Where the local stack's services listen and keep their state (`StackConfig`, moved by `STACK_*`), and the
two questions asked of a loopback port: is something listening on it, and which one is free."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from contract.catalog import REPO_ROOT, STATE_DIR
from contract.torchserve import (
    KEY_FILE_NAME,
    LOCAL_INFERENCE_PORT,
    LOCAL_MANAGEMENT_PORT,
    LOCAL_METRICS_PORT,
    local_torchserve_dir,
)

LOOPBACK = "127.0.0.1"


@dataclass
class StackConfig:
    """Where each service listens and keeps its state; defaults are the documented ports."""

    state_dir: Path = STATE_DIR
    model_store: Path = REPO_ROOT / "model_store"
    host: str = LOOPBACK
    gateway_port: int = 8000
    ui_port: int = 8501
    inference_port: int = LOCAL_INFERENCE_PORT
    management_port: int = LOCAL_MANAGEMENT_PORT
    metrics_port: int = LOCAL_METRICS_PORT
    grpc_inference_port: int = 7070
    grpc_management_port: int = 7071
    s3_port: int = 8333
    # SeaweedFS's internal servers (each also uses port + 10000 for gRPC); 9340 keeps the volume server off
    # TorchServe's 8080.
    s3_internal_ports: dict[str, int] = field(
        default_factory=lambda: {"master": 9333, "volume": 9340, "filer": 8888, "admin": 23646}
    )

    @classmethod
    def from_env(cls) -> StackConfig:
        """The documented defaults, each replaced by `STACK_<FIELD>` when set: `STACK_STATE_DIR`,
        `STACK_MODEL_STORE`, `STACK_HOST` (the address every service binds), `STACK_GATEWAY_PORT`,
        `STACK_UI_PORT`, `STACK_INFERENCE_PORT`, `STACK_MANAGEMENT_PORT`, `STACK_METRICS_PORT`,
        `STACK_GRPC_INFERENCE_PORT`, `STACK_GRPC_MANAGEMENT_PORT`, `STACK_S3_PORT`, and
        `STACK_S3_INTERNAL_PORTS` (JSON: master, volume, filer, admin)."""
        changes: dict[str, Any] = {}
        for item in fields(cls):
            raw = os.environ.get(f"STACK_{item.name.upper()}")
            if raw is None:
                continue
            default = getattr(cls(), item.name)
            changes[item.name] = (
                Path(raw)
                if isinstance(default, Path)
                else json.loads(raw)
                if isinstance(default, dict)
                else type(default)(raw)
            )
        return cls(**changes)

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "log"

    @property
    def torchserve_dir(self) -> Path:
        return local_torchserve_dir(self.state_dir)

    @property
    def torchserve_config(self) -> Path:
        """TorchServe's config.properties at this stack's addresses, written by each start."""
        return self.torchserve_dir / "config.properties"

    @property
    def key_file(self) -> Path:
        return self.torchserve_dir / KEY_FILE_NAME

    @property
    def s3_env_file(self) -> Path:
        return self.state_dir / "local-s3.env"

    def url(self, port: int) -> str:
        return f"http://{self.host}:{port}"

    @property
    def s3_url(self) -> str:
        return self.url(self.s3_port)

    @property
    def gateway_url(self) -> str:
        return self.url(self.gateway_port)

    @property
    def ui_url(self) -> str:
        return self.url(self.ui_port)

    @property
    def inference_url(self) -> str:
        return self.url(self.inference_port)

    @property
    def management_url(self) -> str:
        return self.url(self.management_port)

    @property
    def metrics_url(self) -> str:
        return self.url(self.metrics_port)


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    """A loopback port nothing listens on now (the OS picks it), for extra processes beside a stack."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])
