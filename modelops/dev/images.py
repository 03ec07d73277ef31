"""`python -m modelops.dev.images` (`make image-test`): build the three container images with Podman and run the
compose stack from them, checked from outside as a user would.

Steps: a base image with Python 3.11 (the official slim image when it can be pulled, else one made locally
with debootstrap from Debian's mirror); the gateway, app and torchserve targets of `docker/Dockerfile`, timed
and sized, the gateway image checked to hold no torch; then `docker-compose.yml` through Podman's
Docker-compatible API with Debian's docker-compose: the seed container publishes the small `quick` models to
the stack's S3, the sync loads them into TorchServe, and through the published gateway port every task
answers and `/readyz` is ready; the UI container's health check passes; a gateway container killed from
outside is restarted by the compose restart policy; `down` stops and removes everything. A JSON report
(times, sizes, checks) is written to `var/image-test/report.json`.

What this machine needs, and why (docs/deployment.md says the same for users):
- Podman with runc and these containers.conf settings (written to `var/image-test/containers.conf` and used
  through CONTAINERS_CONF, so the host's own configuration is untouched): lower default ulimits, as this VM
  refuses the ones Podman asks for, and runc, as crun fails on its hybrid cgroups.
- Builds use the host's network (`--network host`) and trust the host's CA bundle (a build secret), as a
  build behind a TLS-inspecting proxy must. torch comes from `docker/wheels/`, filled from the host's own pip
  configuration, when PyTorch's index is out of reach.
- No systemd runs here, and Podman's health checks are run by systemd timers: this program runs each
  container's health check every few seconds itself while the stack is up, as Docker's daemon would.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from contract.catalog import REPO_ROOT, STATE_DIR
from modelops.local.compose import DEFAULT_DIR as COMPOSE_SECRETS_DIR
from modelops.local.compose import write_compose_secrets
from modelops.local.config import free_port
from modelops.train.data import data_dir

WORK_DIR = STATE_DIR / "image-test"
OFFICIAL_BASE = "python:3.11.11-slim-bookworm"
LOCAL_BASE = "localhost/multitask-python3.11:bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# what a slim image leaves out, removed from the local base (128 MB instead of 176 MB): documentation, manual
# pages, translations, apt's package lists, caches and downloads (apt-get update makes them again)
SLIMMED = (
    "usr/share/doc/*",
    "usr/share/man/*",
    "usr/share/info/*",
    "usr/share/locale/*",
    "var/lib/apt/lists/*",
    "var/cache/apt/*.bin",
    "var/cache/apt/archives/*.deb",
)
# what the local base needs: python3.11 and its venv module (the Dockerfile makes /opt/venv), CA certificates
DEBOOTSTRAP_PACKAGES = "python3.11,python3.11-venv,python3-distutils,ca-certificates"
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[engine]
runtime = "runc"
"""
TARGETS = ("gateway", "app", "torchserve")
IMAGE_TAG = "test"
PROJECT = "multitask-image-test"
# services started for the check: all but the one-shot seed (run first, with the quick recipe)
SERVICES = ("s3", "torchserve", "sync", "gateway", "jobs", "ui")
TORCH = "torch==2.13.0"
SEED_QUICK = ("python", "-m", "modelops", "build", "--recipe", "quick", "--data", "/data")


@dataclass
class Report:
    base_image: str = ""
    base_seconds: float = 0.0
    builds: dict[str, dict[str, float]] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)

    def check(self, name: str, passed: bool, **details: Any) -> None:
        self.checks[name] = {"passed": passed, **details}
        print(f"{'ok  ' if passed else 'FAIL'} {name} {json.dumps(details) if details else ''}", flush=True)
        if not passed:
            raise CheckFailed(name)


class CheckFailed(RuntimeError):
    pass


def run(cmd: Sequence[str], env: dict[str, str] | None = None, timeout: float | None = None, **kwargs: Any) -> str:
    """Run a command, stop with its output on failure; returns its stdout."""
    done = subprocess.run(list(cmd), env=env, timeout=timeout, capture_output=True, text=True, check=False, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd[:4])} ... exited {done.returncode}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return done.stdout


def engine_env() -> dict[str, str]:
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    conf = WORK_DIR / "containers.conf"
    conf.write_text(CONTAINERS_CONF, encoding="utf-8")
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def image_exists(env: dict[str, str], name: str) -> bool:
    return subprocess.run(["podman", "image", "exists", name], env=env, check=False).returncode == 0


def base_image(env: dict[str, str], requested: str | None) -> str:
    """The image the Dockerfile builds on: the one asked for, else the official slim image if it is here or can
    be pulled, else a Debian bookworm made with debootstrap (kept for the next run)."""
    if requested:
        return requested
    for name in (OFFICIAL_BASE, LOCAL_BASE):
        if image_exists(env, name):
            return name
    pulled = subprocess.run(["podman", "pull", "-q", OFFICIAL_BASE], env=env, capture_output=True, timeout=120)
    if pulled.returncode == 0:
        return OFFICIAL_BASE
    print(f"{OFFICIAL_BASE} cannot be pulled here; making {LOCAL_BASE} with debootstrap", flush=True)
    with tempfile.TemporaryDirectory(prefix="base-", dir="/var/tmp") as scratch:
        root = Path(scratch) / "root"
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={DEBOOTSTRAP_PACKAGES}",
                "bookworm",
                str(root),
                DEBIAN_MIRROR,
            ]
        )
        for pattern in SLIMMED:
            for item in root.glob(pattern):
                if item.is_dir() and not item.is_symlink():
                    shutil.rmtree(item)
                else:
                    item.unlink()
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        run(["podman", "import", "--change", 'CMD ["/bin/bash"]', "-", LOCAL_BASE], env=env, stdin=tar.stdout)
        tar.wait()
    return LOCAL_BASE


def ca_bundle() -> Path | None:
    """The CA bundle the host's pip trusts, which a build behind the same proxy must trust too."""
    for candidate in (
        os.environ.get("PIP_CERT"),
        os.environ.get("SSL_CERT_FILE"),
        "/etc/ssl/certs/ca-certificates.crt",
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def torch_wheel() -> bool:
    """Put the torch wheel the host's pip resolves into docker/wheels/ (its own configuration: a local wheel, a
    mirror); False when it has none to give, and the build then asks PyTorch's index."""
    folder = REPO_ROOT / "docker" / "wheels"
    if any(folder.glob("torch-2.13.0*.whl")):
        return True
    got = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(folder), TORCH],
        capture_output=True,
        text=True,
        check=False,
    )
    return got.returncode == 0 and any(folder.glob("torch-2.13.0*.whl"))


def build(env: dict[str, str], target: str, base: str, local_torch: bool, no_cache: bool) -> dict[str, float]:
    started = time.perf_counter()
    cmd = ["podman", "build", "--network", "host", "-f", "docker/Dockerfile", "--target", target]
    cmd += ["-t", f"multitask-{target}:{IMAGE_TAG}", "--build-arg", f"BASE_IMAGE={base}"]
    if local_torch:
        cmd += ["--build-arg", "TORCH_INDEX_URL="]
    if (bundle := ca_bundle()) is not None:
        cmd += ["--secret", f"id=ca_bundle,src={bundle}"]
    if no_cache:
        cmd.append("--no-cache")
    run([*cmd, "."], env=env, cwd=REPO_ROOT)
    seconds = time.perf_counter() - started
    size = int(run(["podman", "image", "inspect", "--format", "{{.Size}}", f"multitask-{target}:{IMAGE_TAG}"], env=env))
    return {"seconds": round(seconds, 1), "mb": round(size / 1e6, 1)}


@contextmanager
def podman_api(env: dict[str, str]) -> Iterator[str]:
    """Podman's Docker-compatible API on a socket of this run's own, for docker-compose."""
    sock = WORK_DIR / "podman.sock"
    sock.unlink(missing_ok=True)
    service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"], env=env)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            if time.monotonic() > deadline or service.poll() is not None:
                raise RuntimeError("podman system service did not open its socket")
            time.sleep(0.2)
        yield f"unix://{sock}"
    finally:
        service.terminate()
        service.wait(timeout=30)


@contextmanager
def health_checks(env: dict[str, str], every_s: float = 10.0) -> Iterator[None]:
    """Run each running container's health check at docker-compose.yml's interval (what systemd timers do for
    Podman, and Docker's daemon for Docker)."""
    stop = threading.Event()

    def pump() -> None:
        while not stop.wait(every_s):
            listed = subprocess.run(
                ["podman", "ps", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}"],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            for container in listed.stdout.split():
                subprocess.run(["podman", "healthcheck", "run", container], env=env, capture_output=True, check=False)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


def wait_for(what: str, probe: Callable[[], bool], timeout_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if probe():
                return round(time.monotonic() - started, 1)
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    raise CheckFailed(f"{what}: not within {timeout_s:.0f} s")


class Compose:
    """docker-compose on `docker-compose.yml` as project PROJECT, through Podman's API, gateway and UI published on
    free loopback ports."""

    def __init__(self, env: dict[str, str], docker_host: str, data: Path) -> None:
        self.engine_env = env
        self.gateway_port, self.ui_port = free_port(), free_port()
        self.env = {
            **env,
            "DOCKER_HOST": docker_host,
            "COMPOSE_PROJECT_NAME": PROJECT,
            "IMAGE_TAG": IMAGE_TAG,
            "GATEWAY_PUBLISH": f"127.0.0.1:{self.gateway_port}",
            "UI_PUBLISH": f"127.0.0.1:{self.ui_port}",
            "DATA_DIR": str(data.resolve()),
        }

    def __call__(self, *args: str, timeout: float = 600) -> str:
        return run(["docker-compose", "-f", "docker-compose.yml", *args], env=self.env, timeout=timeout, cwd=REPO_ROOT)

    def container(self, service: str) -> dict[str, Any]:
        """`podman inspect` of the service's one container."""
        labels = [f"label=com.docker.compose.project={PROJECT}", f"label=com.docker.compose.service={service}"]
        ids = run(["podman", "ps", "-aq", *(arg for label in labels for arg in ("--filter", label))], env=self.env)
        if len(ids.split()) != 1:
            raise CheckFailed(f"expected one {service} container, found {len(ids.split())}")
        inspected: dict[str, Any] = json.loads(run(["podman", "inspect", ids.split()[0]], env=self.env))[0]
        return inspected

    def healthy(self, service: str) -> bool:
        return bool(self.container(service)["State"]["Health"]["Status"] == "healthy")

    def left(self) -> list[str]:
        filtered = ["--filter", f"label=com.docker.compose.project={PROJECT}"]
        return run(["podman", "ps", "-aq", *filtered], env=self.env).split()


def seed_and_start(compose: Compose, report: Report) -> None:
    """The seed container publishes the `quick` models to the stack's S3 once it is healthy (`run` does not wait
    for its dependencies' health); then every long-running service."""
    compose("up", "-d", "--no-build", "s3")
    wait_for("S3 healthy", partial(compose.healthy, "s3"), 120)
    started = time.perf_counter()
    compose("run", "--rm", "--no-deps", "seed", *SEED_QUICK, timeout=900)
    report.check("the seed container publishes the quick models", True, seconds=round(time.perf_counter() - started, 1))
    compose("up", "-d", "--no-build", *SERVICES)


def check_answers(http: httpx.Client, report: Report, data: Path) -> None:
    ready = wait_for("/readyz", lambda: http.get("/readyz").status_code == 200, 300)
    report.check("/readyz is ready through the gateway container", True, seconds=ready)
    photo = next((data / "pose").rglob("*.jpg"))
    answers = {
        "sentiment": http.post("/v1/sentiment", json={"text": "A wonderful, moving film. I loved every minute."}),
        "disaster": http.post("/v1/disaster", json={"text": "Forest fire near the highway, three towns evacuated"}),
        "pose": http.post("/v1/pose", files={"image": (photo.name, photo.read_bytes(), "image/jpeg")}),
    }
    for task, answer in answers.items():
        label = answer.json().get("label") if answer.status_code == 200 else answer.text[:200]
        report.check(f"/v1/{task} answers", answer.status_code == 200, status=answer.status_code, label=label)


# the long-running services with a health check in docker-compose.yml
HEALTH_CHECKED = ("s3", "torchserve", "gateway", "ui")


def check_health(compose: Compose, report: Report) -> None:
    """Every health check passes (Podman's API does not hold `depends_on` to them, so they are checked here),
    and the UI answers on its published port."""
    for service in HEALTH_CHECKED:
        seconds = wait_for(f"{service} healthy", partial(compose.healthy, service), 120)
        report.check(f"the {service} container's health check passes", True, seconds=seconds)
    status = httpx.get(f"http://127.0.0.1:{compose.ui_port}/_stcore/health", timeout=10).status_code
    report.check("the UI answers on its published port", status == 200, status=status)


def check_restart(compose: Compose, http: httpx.Client, report: Report) -> None:
    """SIGKILL the gateway's process from the host: the restart policy brings the container back."""
    before = compose.container("gateway")
    os.kill(int(before["State"]["Pid"]), signal.SIGKILL)

    def back() -> bool:
        return compose.container("gateway")["RestartCount"] > before["RestartCount"] and http.get("/readyz").is_success

    seconds = wait_for("gateway restart", back, 120)
    restarts = compose.container("gateway")["RestartCount"]
    report.check("a killed gateway container is restarted by its policy", True, seconds=seconds, restarts=restarts)


def compose_checks(env: dict[str, str], report: Report, data: Path) -> None:
    write_compose_secrets(COMPOSE_SECRETS_DIR)
    with podman_api(env) as docker_host, health_checks(env):
        compose = Compose(env, docker_host, data)
        stopped = False
        try:
            seed_and_start(compose, report)
            with httpx.Client(base_url=f"http://127.0.0.1:{compose.gateway_port}", timeout=30) as http:
                check_answers(http, report, data)
                check_health(compose, report)
                check_restart(compose, http, report)
            started = time.perf_counter()
            compose("down", "-v", "--timeout", "30")
            stopped = True
            left = compose.left()
            seconds = round(time.perf_counter() - started, 1)
            report.check("the stack stops cleanly", not left, seconds=seconds, containers_left=len(left))
        finally:
            if not stopped:
                # what went wrong, before the evidence is removed
                subprocess.run(
                    ["docker-compose", "-f", "docker-compose.yml", "logs", "--no-color", "--tail", "40"],
                    env=compose.env,
                    cwd=REPO_ROOT,
                    check=False,
                )
                subprocess.run(
                    ["docker-compose", "-f", "docker-compose.yml", "down", "-v", "--timeout", "10"],
                    env=compose.env,
                    cwd=REPO_ROOT,
                    check=False,
                )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m modelops.dev.images", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--base-image", help=f"build on this image (default: {OFFICIAL_BASE}, else a local debootstrap one)"
    )
    parser.add_argument("--no-cache", action="store_true", help="build every layer again (for build-time figures)")
    parser.add_argument("--build-only", action="store_true", help="build and size the images, start nothing")
    parser.add_argument("--data", help="training data for the seed (default $DATA_DIR or ../shared/data)")
    args = parser.parse_args(argv)
    if shutil.which("podman") is None:
        sys.exit("make image-test needs Podman: sudo apt-get install podman runc (see docs/deployment.md)")
    env = engine_env()
    report = Report()
    started = time.perf_counter()
    report.base_image = base_image(env, args.base_image)
    report.base_seconds = round(time.perf_counter() - started, 1)
    local_torch = torch_wheel()
    try:
        for target in TARGETS:
            report.builds[target] = build(env, target, report.base_image, local_torch, args.no_cache)
            print(f"built multitask-{target}:{IMAGE_TAG} {json.dumps(report.builds[target])}", flush=True)
        has_torch = subprocess.run(
            ["podman", "run", "--rm", f"multitask-gateway:{IMAGE_TAG}", "python", "-c", "import torch"],
            env=env,
            capture_output=True,
            check=False,
        )
        report.check("the gateway image holds no torch", has_torch.returncode != 0, mb=report.builds["gateway"]["mb"])
        if not args.build_only:
            compose_checks(env, report, data_dir(args.data))
    finally:
        (WORK_DIR / "report.json").write_text(json.dumps(report.__dict__, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    try:
        main()
    except CheckFailed as failed:
        sys.exit(f"image test failed: {failed}")
