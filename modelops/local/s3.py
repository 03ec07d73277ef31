"""The local S3 (SeaweedFS): its credentials, generated once per state folder, and its service description."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from modelops.local.config import StackConfig
from modelops.local.services import Service
from modelops.tools import bin_path

# Go's soft memory limit for SeaweedFS: its collector then returns the buffers of uploads and downloads instead
# of keeping them. Measured after storing six 30 MB objects and reading one back: 415 MB resident by default,
# 113 MB with 64 MiB (a soft limit: Go exceeds it rather than fail). docker-compose.yml sets the same.
S3_GO_MEMORY_LIMIT = "64MiB"


def new_s3_credentials() -> tuple[str, str]:
    return "local-" + secrets.token_hex(8), secrets.token_urlsafe(30)


def local_s3_env(cfg: StackConfig, starting: bool = False) -> dict[str, str]:
    """Credentials for the local S3 server, generated once per state folder and kept in an env file.

    Everything that talks to S3 reads the standard AWS_* variables; this only supplies them for the local
    server. Variables already set in the environment win, so the same commands can target AWS S3. `starting`:
    the stack's S3 is about to listen at `cfg.s3_url`, so the file's endpoint follows it (a `make run` with
    another `STACK_S3_PORT` or `STACK_HOST` than the first one); the credentials stay.
    """
    path = cfg.s3_env_file
    values = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line) if path.exists() else {}
    if not values:
        access_key, secret_key = new_s3_credentials()
        values = {
            "AWS_ENDPOINT_URL": cfg.s3_url,
            "AWS_ACCESS_KEY_ID": access_key,
            "AWS_SECRET_ACCESS_KEY": secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    elif not starting or values.get("AWS_ENDPOINT_URL") == cfg.s3_url:
        return values
    values["AWS_ENDPOINT_URL"] = cfg.s3_url
    write_private(path, "".join(f"{k}={v}\n" for k, v in values.items()))
    return values


# Any of these set names an S3 of the caller's own (AWS through boto3's usual chain, or another endpoint): every
# command then uses it. MODEL_BUCKET counts, so a machine with an instance role or SSO and no AWS_* variable says
# which S3 it means by naming its bucket, as the deploy guides do.
OWN_S3_VARIABLES = (
    "AWS_ENDPOINT_URL",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "MODEL_BUCKET",
)


def default_s3_env(cfg: StackConfig) -> dict[str, str]:
    """The local S3's credentials, unless the caller's environment names an S3 of its own (`OWN_S3_VARIABLES`)
    or no local S3 was ever started: the one rule every `modelops` command, the gateway's job store and the job
    worker follow."""
    named = any(os.environ.get(k) for k in OWN_S3_VARIABLES)
    return {} if named or not cfg.s3_env_file.exists() else local_s3_env(cfg)


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


def service(cfg: StackConfig) -> Service:
    """SeaweedFS's all-in-one server (`weed mini`) with the S3 API on `cfg.s3_port`, refusing anonymous access."""
    s3_dir = cfg.state_dir / "s3"
    identities = s3_dir / "s3-identities.json"

    def prepare() -> None:
        env = local_s3_env(cfg, starting=True)
        (s3_dir / "data").mkdir(parents=True, exist_ok=True)
        write_private(identities, json.dumps(s3_identities(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])))

    ports = cfg.s3_internal_ports
    return Service(
        name="s3",
        title="SeaweedFS S3",
        command=[
            bin_path("weed"),
            "mini",
            f"-dir={s3_dir / 'data'}",
            f"-ip={cfg.host}",
            f"-ip.bind={cfg.host}",
            f"-s3.port={cfg.s3_port}",
            f"-s3.config={identities}",
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
        ],
        env={"GOMEMLIMIT": S3_GO_MEMORY_LIMIT},
        prepare=prepare,
        ready=lambda: s3_reads(_probe_client(cfg)),
        ready_timeout_s=90,
        url=cfg.s3_url,
        ports=[
            ("STACK_S3_PORT", cfg.s3_port),
            *(("STACK_S3_INTERNAL_PORTS", port + offset) for port in ports.values() for offset in (0, 10000)),
        ],
    )


def _probe_client(cfg: StackConfig) -> Any:
    """A boto3 client of the local S3 that fails fast (one attempt, short timeouts): for the readiness probe."""
    env = local_s3_env(cfg)
    return boto3.client(
        "s3",
        endpoint_url=cfg.s3_url,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env.get("AWS_DEFAULT_REGION", "us-east-1"),
        config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1}),
    )


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
