"""Run the whole service locally without Docker: SeaweedFS (S3), TorchServe and the gateway.

Each service is a child process in its own session, with a pid file and a log under the state folder
(`var/` by default), so `make stop` can end exactly what `make run` started, and a second `make run` reuses
services that are still up. The test suite starts the same services through the same functions, on free
ports and in a temporary state folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from contract.catalog import REPO_ROOT, TaskSpec
from contract.logs import log_event
from contract.torchserve import TorchServeError, bearer, read_keys
from modelops.serve.sync import Syncer
from modelops.serve.torchserve import ManagementClient
from modelops.store.s3 import ModelStore
from modelops.tools import bin_path

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


@dataclass
class StackConfig:
    """Where each service listens and keeps its state; defaults are the documented ports."""

    state_dir: Path = REPO_ROOT / "var"
    model_store: Path = REPO_ROOT / "model_store"
    host: str = LOOPBACK
    gateway_port: int = 8000
    ui_port: int = 8501
    inference_port: int = 8080
    management_port: int = 8081
    metrics_port: int = 8082
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
        return self.state_dir / "torchserve"

    @property
    def key_file(self) -> Path:
        return self.torchserve_dir / "key_file.json"

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


# --- process bookkeeping -------------------------------------------------------------------------------


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


def spawn(cfg: StackConfig, name: str, cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> int:
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    cfg.log_dir.mkdir(parents=True, exist_ok=True)
    log = (cfg.log_dir / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        cmd,
        cwd=cwd or REPO_ROOT,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopping it also stops its children (workers)
    )
    log.close()
    _pid_file(cfg, name).write_text(str(proc.pid))
    log_event(logger, "stack.started", service=name, pid=proc.pid, log=str(cfg.log_dir / f"{name}.log"))
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


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def ports(cfg: StackConfig) -> dict[str, list[tuple[str, int]]]:
    """Each service's listening ports, with the variable that moves each (`StackConfig.from_env`)."""
    internal = [
        ("STACK_S3_INTERNAL_PORTS", port + offset) for port in cfg.s3_internal_ports.values() for offset in (0, 10000)
    ]
    return {
        "s3": [("STACK_S3_PORT", cfg.s3_port), *internal],
        "torchserve": [
            ("STACK_INFERENCE_PORT", cfg.inference_port),
            ("STACK_MANAGEMENT_PORT", cfg.management_port),
            ("STACK_METRICS_PORT", cfg.metrics_port),
            ("STACK_GRPC_INFERENCE_PORT", cfg.grpc_inference_port),
            ("STACK_GRPC_MANAGEMENT_PORT", cfg.grpc_management_port),
        ],
        "gateway": [("STACK_GATEWAY_PORT", cfg.gateway_port)],
        "ui": [("STACK_UI_PORT", cfg.ui_port)],
    }


def ports_taken(cfg: StackConfig) -> list[str]:
    """The stack's ports that another program listens on, each as a line saying how to move it.

    Checked before anything starts: otherwise the service that cannot bind dies and `make run` reports only
    that it was "not ready after 90s". Ports of this stack's own running services are theirs to hold."""
    return [
        f"port {port} on {cfg.host} ({service}) is taken by another program: stop it, or set {variable}"
        for service, listed in ports(cfg).items()
        if running_pid(cfg, service) is None
        for variable, port in listed
        if port_open(cfg.host, port)
    ]


def free_port() -> int:
    """A loopback port nothing listens on now (the OS picks it), for extra processes beside a stack."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- S3 (SeaweedFS) ------------------------------------------------------------------------------------


def new_s3_credentials() -> tuple[str, str]:
    return "local-" + secrets.token_hex(8), secrets.token_urlsafe(30)


def local_s3_env(cfg: StackConfig) -> dict[str, str]:
    """Credentials for the local S3 server, generated once per state folder and kept in an env file.

    Everything that talks to S3 reads the standard AWS_* variables; this only supplies them for the local
    server. Variables already set in the environment win, so the same commands can target AWS S3.
    """
    path = cfg.s3_env_file
    if not path.exists():
        access_key, secret_key = new_s3_credentials()
        values = {
            "AWS_ENDPOINT_URL": cfg.s3_url,
            "AWS_ACCESS_KEY_ID": access_key,
            "AWS_SECRET_ACCESS_KEY": secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        write_private(path, "".join(f"{k}={v}\n" for k, v in values.items()))
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Write a credentials file (by default one only its owner can read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)  # whatever the umask, and for a file that already existed
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def s3_identities(access_key: str, secret_key: str) -> dict[str, Any]:
    """SeaweedFS's S3 identity file: one identity with these credentials, so anonymous access is refused."""
    return {
        "identities": [
            {
                "name": "modelops",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }


# Go's soft memory limit for SeaweedFS: its collector then returns the buffers of uploads and downloads instead
# of keeping them. Measured after storing six 30 MB objects and reading one back: 415 MB resident by default,
# 113 MB with 64 MiB (a soft limit: Go exceeds it rather than fail). docker-compose.yml sets the same.
S3_GO_MEMORY_LIMIT = "64MiB"


def start_s3(cfg: StackConfig) -> None:
    if running_pid(cfg, "s3"):
        log_event(logger, "stack.reused", service="s3", url=cfg.s3_url)
        return
    env = local_s3_env(cfg)
    s3_dir = cfg.state_dir / "s3"
    (s3_dir / "data").mkdir(parents=True, exist_ok=True)
    config_path = s3_dir / "s3-identities.json"
    write_private(config_path, json.dumps(s3_identities(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])))
    ports = cfg.s3_internal_ports
    cmd = [
        bin_path("weed"),
        "mini",
        f"-dir={s3_dir / 'data'}",
        f"-ip={cfg.host}",
        f"-ip.bind={cfg.host}",
        f"-s3.port={cfg.s3_port}",
        f"-s3.config={config_path}",
        "-s3.autoCreateBucket=false",
        "-s3.allowDeleteBucketNotEmpty=false",
        "-master.telemetry=false",
        f"-master.port={ports['master']}",
        f"-volume.port={ports['volume']}",
        f"-filer.port={ports['filer']}",
        f"-admin.port={ports['admin']}",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
    ]
    pid = spawn(cfg, "s3", cmd, env={"GOMEMLIMIT": S3_GO_MEMORY_LIMIT})
    probe = boto3.client(
        "s3",
        endpoint_url=cfg.s3_url,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env.get("AWS_DEFAULT_REGION", "us-east-1"),
        config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1}),
    )
    wait_until(lambda: s3_reads(probe), "SeaweedFS S3", 90, lambda: running_pid(cfg, "s3") == pid)


def s3_reads(s3: Any) -> bool:
    """Whether the S3 server behind this boto3 client serves authenticated reads end to end.

    SeaweedFS's S3 port answers before its filer and volume server are ready: a sync right after a restart
    got "InternalError ... please try again" reading the manifest. So this lists the buckets and reads one
    byte of the first non-empty object it finds, through the same path a download takes (on a fresh start there
    is no object yet, and listing is enough). Empty objects are skipped: a range read of one fails by design
    (416 on AWS, an error on SeaweedFS), and a bulk job's active marker is empty."""
    try:
        for bucket in s3.list_buckets()["Buckets"]:
            listed = s3.list_objects_v2(Bucket=bucket["Name"], MaxKeys=100).get("Contents", [])
            for item in (item for item in listed if item["Size"] > 0):
                s3.get_object(Bucket=bucket["Name"], Key=item["Key"], Range="bytes=0-0")["Body"].read()
                return True
        return True
    except (BotoCoreError, ClientError):
        return False


# --- TorchServe ----------------------------------------------------------------------------------------


def torchserve_config(cfg: StackConfig, template: Path = REPO_ROOT / "config.properties") -> Path:
    """The project's config.properties with this stack's addresses and model store filled in."""
    overrides = {
        "inference_address": cfg.inference_url,
        "management_address": cfg.management_url,
        "metrics_address": cfg.url(cfg.metrics_port),
        "model_store": str(cfg.model_store),
        "grpc_inference_port": str(cfg.grpc_inference_port),
        "grpc_management_port": str(cfg.grpc_management_port),
    }
    lines = []
    for line in template.read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        lines.append(f"{key}={overrides.pop(key)}" if key in overrides and "=" in line else line)
    lines.extend(f"{k}={v}" for k, v in overrides.items())
    cfg.torchserve_dir.mkdir(parents=True, exist_ok=True)
    out = cfg.torchserve_dir / "config.properties"
    out.write_text("\n".join(lines) + "\n")
    return out


def prepared_torchserve(cfg: StackConfig, template: Path = REPO_ROOT / "config.properties") -> list[str]:
    """Everything a TorchServe start needs before the process (its config at this stack's addresses, the model
    store, no stale key file), and the command to run in `cfg.torchserve_dir`, where it writes its key file:
    what `start_torchserve` spawns and `modelops torchserve` (a container's entry point) becomes."""
    config = torchserve_config(cfg, template)
    cfg.model_store.mkdir(parents=True, exist_ok=True)
    cfg.key_file.unlink(missing_ok=True)  # a stale key file from a killed run would hold dead keys
    return [
        bin_path("torchserve"),
        "--foreground",
        "--ts-config",
        str(config),
        "--model-store",
        str(cfg.model_store),
        "--no-config-snapshots",
    ]


def start_torchserve(cfg: StackConfig, template: Path = REPO_ROOT / "config.properties") -> None:
    """Start TorchServe with `template` (this project's config.properties, or another such as the KServe
    view's) at this stack's addresses; returns once its management API answers."""
    if running_pid(cfg, "torchserve"):
        log_event(logger, "stack.reused", service="torchserve", url=cfg.inference_url)
        return
    command = prepared_torchserve(cfg, template)
    tmp = cfg.torchserve_dir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env = {
        # TorchServe keeps its pid file in the temp dir: one temp dir per stack lets stacks coexist.
        "TMPDIR": str(tmp),
        "TEMP": str(tmp),
        "LOG_LOCATION": str(cfg.log_dir / "torchserve"),
        "METRICS_LOCATION": str(cfg.log_dir / "torchserve"),
        # One intra-op thread per worker (the handler sets torch's too): ~3x faster under load on 2 cores.
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        # The JVM's native memory and the workers (who inherit it): glibc keeps an arena per thread otherwise
        "MALLOC_ARENA_MAX": "2",
    }
    pid = spawn(cfg, "torchserve", command, env=env, cwd=cfg.torchserve_dir)

    def management_answers() -> bool:
        # A TorchServe with token authorization off writes no key file and needs no key.
        headers = bearer(read_keys(cfg.key_file).management) if cfg.key_file.exists() else {}
        return httpx.get(f"{cfg.management_url}/models", headers=headers, timeout=2).status_code == 200

    wait_until(management_answers, "TorchServe", 120, lambda: running_pid(cfg, "torchserve") == pid)


def management_client(cfg: StackConfig) -> ManagementClient:
    return ManagementClient(cfg.management_url, cfg.key_file)


def syncer(cfg: StackConfig, catalog: dict[str, TaskSpec], store: ModelStore) -> Syncer:
    """The S3 -> TorchServe sync for this stack; its status goes to `var/run/sync-status.json`."""
    return Syncer(
        catalog,
        store,
        cfg.model_store,
        management_client(cfg),
        inference_url=cfg.inference_url,
        status_file=cfg.run_dir / "sync-status.json",
    )


# --- gateway -------------------------------------------------------------------------------------------


def _start_web_service(
    cfg: StackConfig,
    name: str,
    cmd: list[str],
    env: dict[str, str],
    url: str,
    health_path: str,
    cwd: Path | None = None,
) -> None:
    """Reuse the service if its pid is alive, else spawn it and wait until `url + health_path` answers 200."""
    if running_pid(cfg, name):
        log_event(logger, "stack.reused", service=name, url=url)
        return
    pid = spawn(cfg, name, cmd, env=env, cwd=cwd)
    wait_until(
        lambda: httpx.get(f"{url}{health_path}", timeout=2).status_code == 200,
        name,
        60,
        lambda: running_pid(cfg, name) == pid,
    )


def upstream_entry(cfg: StackConfig) -> dict[str, str]:
    """This stack's TorchServe as one entry of the gateway's GATEWAY_UPSTREAMS list."""
    return {
        "name": "local",
        "inference_url": cfg.inference_url,
        "management_url": cfg.management_url,
        "key_file": str(cfg.key_file),
    }


def jobs_s3_env(cfg: StackConfig) -> dict[str, str]:
    """S3 for bulk jobs (the gateway's job store, the job worker): the local S3's credentials, unless the
    caller's environment names an S3 of its own."""
    named = any(os.environ.get(k) for k in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_ENDPOINT_URL"))
    return {} if named or not cfg.s3_env_file.exists() else local_s3_env(cfg)


def gateway_env(cfg: StackConfig) -> dict[str, str]:
    """The gateway's upstream, and S3 for its bulk jobs."""
    return {"GATEWAY_UPSTREAMS": json.dumps([upstream_entry(cfg)]), **jobs_s3_env(cfg)}


def start_gateway(cfg: StackConfig, extra_env: dict[str, str] | None = None, uvicorn_args: Sequence[str] = ()) -> None:
    """Start uvicorn serving the gateway; `extra_env` adds GATEWAY_* settings, `uvicorn_args` uvicorn flags
    (tests and benches use them)."""
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "gateway.main:create_app",
        "--factory",
        "--host",
        cfg.host,
        "--port",
        str(cfg.gateway_port),
        "--no-access-log",
        *uvicorn_args,
    ]
    _start_web_service(cfg, "gateway", cmd, {**gateway_env(cfg), **(extra_env or {})}, cfg.gateway_url, "/healthz")


@contextlib.contextmanager
def second_gateway(
    cfg: StackConfig,
    extra_env: dict[str, str] | None = None,
    uvicorn_args: Sequence[str] = (),
    state_dir: Path | None = None,
) -> Iterator[StackConfig]:
    """Another gateway process on a free port in front of this stack's TorchServe, with its own GATEWAY_*
    settings or uvicorn flags: what tests of settings the stack's gateway does not have, and benches comparing
    two gateways side by side, run against. Its pid file and log go to `state_dir` (a temporary folder when
    None); it is stopped on exit."""
    with contextlib.ExitStack() as cleanup:
        if state_dir is None:
            state_dir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="gateway-")))
        second = StackConfig(
            state_dir=state_dir,
            model_store=cfg.model_store,
            gateway_port=free_port(),
            inference_port=cfg.inference_port,
            management_port=cfg.management_port,
        )
        second.torchserve_dir.mkdir(parents=True, exist_ok=True)
        cleanup.callback(stop, second, "gateway")
        start_gateway(second, extra_env={**gateway_env(cfg), **(extra_env or {})}, uvicorn_args=uvicorn_args)
        yield second


# --- bulk job worker -----------------------------------------------------------------------------------


def start_jobs_worker(cfg: StackConfig, extra_env: dict[str, str] | None = None) -> None:
    """The bulk job worker (`modelops jobs worker`), calling this stack's gateway."""
    if running_pid(cfg, "jobs"):
        log_event(logger, "stack.reused", service="jobs")
        return
    env = {**jobs_s3_env(cfg), "JOB_GATEWAY_URL": cfg.gateway_url, **(extra_env or {})}
    spawn(cfg, "jobs", [sys.executable, "-m", "modelops", "jobs", "worker"], env=env)


# --- UI ------------------------------------------------------------------------------------------------


def start_ui(cfg: StackConfig) -> None:
    """Streamlit, talking only to this stack's gateway."""
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(REPO_ROOT / "ui" / "app.py"),
        "--server.address",
        cfg.host,
        "--server.port",
        str(cfg.ui_port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]
    env = {"UI_GATEWAY_URL": cfg.gateway_url, "PYTHONPATH": str(REPO_ROOT)}
    _start_web_service(cfg, "ui", cmd, env, cfg.ui_url, "/_stcore/health", cwd=REPO_ROOT / "ui")


SERVICES = ("ui", "jobs", "gateway", "torchserve", "s3")


def stop_all(cfg: StackConfig) -> list[str]:
    """Stop a supervisor running elsewhere (it stops its services), then anything left, gateway first."""
    stopped = ["supervisor"] if stop(cfg, "supervisor", timeout_s=60, group=False) else []
    return stopped + [name for name in SERVICES if stop(cfg, name)]
