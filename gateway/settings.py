"""Gateway settings, from environment variables prefixed `GATEWAY_`.

Each one is documented in docs/configuration.md ("Gateway" and "Bulk jobs"); tests/unit/test_docs.py fails
when a setting here and that page disagree, so add a row there with every new field.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.catalog import STATE_DIR
from contract.torchserve import (
    KEY_FILE_NAME,
    LOCAL_INFERENCE_PORT,
    LOCAL_MANAGEMENT_PORT,
    LOCAL_METRICS_PORT,
    local_torchserve_dir,
)
from contract.wire import MAX_INSTANCES, MAX_PIXELS


def _base_url(url: str) -> str:
    """An upstream base URL. Only plain `http://`: the gateway's transport (`gateway/http1.py`) speaks HTTP/1.1
    without TLS, so an `https://` URL is refused here, at start, rather than sent in clear text."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        raise ValueError(
            f"'{url}': TLS to TorchServe is not supported (the gateway's upstream transport is plain HTTP/1.1); "
            "use http:// on a loopback or private network, or a TLS-terminating sidecar beside TorchServe"
        )
    if parts.scheme != "http" or not parts.netloc:
        raise ValueError(f"'{url}' is not an http:// URL")
    return url.rstrip("/")


BaseUrl = Annotated[str, AfterValidator(_base_url)]


class UpstreamSettings(BaseModel):
    """One TorchServe the gateway sends predictions to.

    `management_url` is optional: without it (a KServe predictor, whose management API stays inside its pod)
    readiness comes from TorchServe's `/ping` (a KServe predictor opens its port only once the models of its
    snapshot are registered; requests that arrive while their workers start wait in TorchServe's queue).
    `metrics_url` (TorchServe's metrics API) lets the gateway that owns the scaling policy see the calls other
    gateways forward, so it never takes a task they use for idle. `key_file` is optional too: a TorchServe with
    token authorization off (KServe's predictor, fenced by a NetworkPolicy instead) gets no Authorization header.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", description="label in logs, metrics and /readyz; default host:port")
    inference_url: BaseUrl
    management_url: BaseUrl | None = None
    metrics_url: BaseUrl | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _default_name(self) -> UpstreamSettings:
        if not self.name:
            self.name = urlsplit(self.inference_url).netloc
        return self


def _local_torchserve() -> list[UpstreamSettings]:
    return [
        UpstreamSettings(
            name="local",
            inference_url=f"http://127.0.0.1:{LOCAL_INFERENCE_PORT}",
            management_url=f"http://127.0.0.1:{LOCAL_MANAGEMENT_PORT}",
            metrics_url=f"http://127.0.0.1:{LOCAL_METRICS_PORT}",
            key_file=local_torchserve_dir(STATE_DIR) / KEY_FILE_NAME,
        )
    ]


def _unique_names(upstreams: list[UpstreamSettings]) -> list[UpstreamSettings]:
    names = [u.name for u in upstreams]
    if len(set(names)) != len(names):
        raise ValueError(f"upstream names must be unique, got {names}")
    return upstreams


class Settings(BaseSettings):
    # An empty variable means "not set" (compose passes optional settings through as empty strings).
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", env_ignore_empty=True)

    upstreams: Annotated[list[UpstreamSettings], AfterValidator(_unique_names)] = Field(
        default_factory=_local_torchserve,
        min_length=1,
        description="TorchServes to balance over (JSON list), round-robin among the healthy ones",
    )
    upstream_check_interval_s: float = Field(default=5.0, gt=0, description="how often each upstream is pinged")
    jobs_input_prefix: str | None = Field(
        default=None,
        pattern=r"^s3://[^/]+/",
        description="bulk jobs may read their file (or an image task's photos) from s3:// URIs under this prefix "
        "only; unset: files are uploaded",
    )
    job_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1, description="largest bulk job file")
    job_max_rows: int = Field(default=200_000, ge=1, description="most rows in one bulk job")
    job_max_active: int = Field(default=4, ge=1, description="bulk jobs one caller (API key) may have unfinished")
    job_shard_rows: int = Field(
        default=1024, ge=1, description="rows per shard: what a job worker claims, and redoes if it dies"
    )
    training_status_dir: Path | None = Field(
        default=None,
        description="a build's progress folder (`make run` sets it): `GET /v1/models` says what is being trained",
    )
    task_refresh_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="how often the upstreams' model lists are read for tasks added or removed (routes follow)",
    )
    catalog_path: Path | None = Field(default=None, description="model catalog; default models.toml")
    descriptions_dir: Path | None = Field(
        default=None,
        description="a folder for each model version's card and task spec (`make run` sets one): a restarted "
        "gateway then routes the tasks scaled to zero without starting them; unset, they are held in memory",
    )

    upstream_timeout_s: float = Field(default=30.0, gt=0, description="wait for one TorchServe answer")
    connect_timeout_s: float = Field(default=2.0, gt=0)
    max_connections: int = Field(default=64, ge=1, description="pooled connections to TorchServe")
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="larger request bodies get 413")
    max_headers: int = Field(default=64, ge=8, description="more request headers get 431")
    max_header_bytes: int = Field(default=16_384, ge=1024, description="larger header blocks (names + values) get 431")
    max_batch_texts: int = Field(
        default=32,
        ge=1,
        le=MAX_INSTANCES,
        description="most texts in one {'texts': [...]} request (sent to TorchServe as one request)",
    )
    max_image_body_bytes: int = Field(default=33_554_432, ge=1024, description="body limit on image routes")
    max_image_bytes: int = Field(default=10_485_760, ge=1024, description="most bytes in one image")
    max_image_pixels: int = Field(default=MAX_PIXELS, ge=1, description="most pixels (width x height) in one image")
    max_images: int = Field(default=8, ge=1, description="most images in one request")
    image_forward_shorter_side: int = Field(
        default=512, ge=256, description="images are downscaled to this shorter side before TorchServe"
    )
    coalesce_window_ms: float = Field(
        default=2.0,
        ge=0,
        le=50,
        description=(
            "under load (twice as many texts of a model in flight as its workers x batch size), single-text "
            "predictions arriving within this window travel to TorchServe together; 0 = off"
        ),
    )
    explain_concurrency: int = Field(
        default=1,
        ge=1,
        description=(
            "explanation requests running at once per model (each takes one TorchServe worker for up to a "
            "second per item); more get 429 with Retry-After. Keep it below the model's workers"
        ),
    )
    retry_after_s: int = Field(default=5, ge=1, description="Retry-After sent with 503 answers")
    upstream_retries: int = Field(
        default=1,
        ge=0,
        le=3,
        description=(
            "re-sends of a prediction TorchServe refused with 404 (not loaded there yet), 503 (no free worker) "
            "or 'Worker died.' (507, or 500 before TorchServe reaps the worker), or did not answer within "
            "upstream_timeout_s (a dying worker's gathered jobs are dropped unanswered)"
        ),
    )
    cors_origins: str = Field(
        default="",
        description="comma-separated origins whose web pages may call the API from a browser "
        "('https://app.example.com,https://admin.example.com', or '*'); empty: no CORS headers",
    )
    api_keys: str = Field(
        default="", repr=False, description="'name:key,name:key' accepted in X-API-Key; empty with no file = open"
    )
    api_keys_file: Path | None = Field(default=None, description="key file of 'name sha256:<hex> [tasks]' lines")
    rate_limit_per_s: float = Field(default=0.0, ge=0, description="requests per second per API key (0 = off)")
    rate_limit_burst: int = Field(default=20, ge=1, description="requests a key may send at once before 429")

    scaling: Literal["owner", "follow", "off"] = Field(
        default="owner",
        description="`owner`: this gateway scales its TorchServes' workers (to zero when idle, up under load, within "
        "the budget); `follow`: it starts cold tasks for its callers and scales nothing down (a second gateway in "
        "front of the same TorchServes); `off`: workers stay as registered",
    )
    scale_idle_s: float = Field(
        default=300.0,
        gt=0,
        description="a task that may go to zero (min_workers 0) is scaled to zero after this long unused",
    )
    scale_start_wait_s: float = Field(
        default=20.0,
        gt=0,
        description="how long a call to a cold task waits for its worker; past it: 503 `model_starting` with "
        "Retry-After (the start goes on)",
    )
    scale_start_timeout_s: float = Field(
        default=180.0, gt=0, description="how long one worker start may take before it counts as failed"
    )
    worker_memory_budget_mb: float = Field(
        default_factory=lambda: default_memory_budget_mb(),
        gt=0,
        description="the memory the TorchServe workers may hold together (MB, resident); default this machine's "
        "memory less 1 GiB for the rest of the stack",
    )
    worker_memory_estimate_mb: float = Field(
        default=300.0, gt=0, description="one worker's memory before TorchServe has measured it (MB, resident)"
    )
    scale_up_after_s: float = Field(
        default=2.0,
        gt=0,
        description="a task with every slot taken (workers x batch size) this long gets one more worker",
    )
    scale_down_after_s: float = Field(
        default=30.0,
        gt=0,
        description="a task whose load fits half of one worker fewer this long gives one back, to min_workers",
    )
    scale_interval_s: float = Field(default=2.0, gt=0, description="how often the scaler reads TorchServe and acts")
    scale_max_starting: int = Field(
        default=2, ge=1, description="worker starts at once (each takes a core for seconds)"
    )


# What the rest of a stack holds beside the workers: TorchServe's JVM (~250 MB), S3 (~120 MB), the gateway, the
# UI, the supervisor and a job worker (~250 MB together), and room for the system (docs/benchmarks.md).
RESERVED_MB = 1024


def default_memory_budget_mb() -> float:
    """This machine's memory (Linux's /proc/meminfo) less `RESERVED_MB`, and at least half of it; 3 GiB where
    it cannot be read. The workers are counted resident, shared pages in each (`gateway.scaling.memory`), so
    what they hold together stays below the budget."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            total_mb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:")) / 1024
    except (OSError, StopIteration, ValueError, IndexError):
        return 3072.0
    return round(max(total_mb - RESERVED_MB, total_mb / 2))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
