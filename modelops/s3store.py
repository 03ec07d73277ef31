"""The published model store in S3: archives plus a sha256 manifest.

Layout under `s3://$MODEL_BUCKET/$MODEL_PREFIX/`:

    model-store/<model>.mar        the archive TorchServe loads
    model-store/manifest.json      {"models": {<model>: {file, version, sha256, size, published_at, card}}}

The manifest is written last, so a reader never sees an entry for an archive that is not fully uploaded, and
every download is checked against the manifest's sha256 before it replaces a local file.

boto3 is configured only through the standard AWS variables (`AWS_ENDPOINT_URL` for a local S3 server), so
the same code talks to AWS S3 unchanged.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from tqdm import tqdm

from modelops.logs import log_event
from modelops.package import read_model_card
from modelops.tools import file_sha256

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"


class StoreError(RuntimeError):
    """S3 could not be reached or refused the operation; the message says which and why."""


class IntegrityError(StoreError):
    """A downloaded archive does not match the sha256 the manifest promises."""


@dataclass(frozen=True)
class StoreLocation:
    bucket: str
    prefix: str

    @classmethod
    def from_env(cls) -> StoreLocation:
        return cls(
            bucket=os.environ.get("MODEL_BUCKET", "models"),
            prefix=os.environ.get("MODEL_PREFIX", "multitask").strip("/"),
        )

    def key(self, name: str) -> str:
        return f"{self.prefix}/model-store/{name}" if self.prefix else f"model-store/{name}"

    def uri(self, name: str = "") -> str:
        return f"s3://{self.bucket}/{self.key(name)}"


def _progress(total: int, desc: str) -> tqdm:
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, leave=False)


class ModelStore:
    """Publish archives to, and fetch verified archives from, one S3 location."""

    def __init__(self, location: StoreLocation | None = None, client: Any | None = None) -> None:
        self.location = location or StoreLocation.from_env()
        self.s3 = client or boto3.client("s3")

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            raise StoreError(f"S3 refused {what}: {err.get('Code')} {err.get('Message', '')}".strip()) from exc
        except BotoCoreError as exc:
            raise StoreError(f"S3 unreachable during {what}: {exc}") from exc

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (local S3 setup; on AWS the bucket is provisioned)."""
        try:
            self.s3.head_bucket(Bucket=self.location.bucket)
        except ClientError:
            self._call("create_bucket", self.s3.create_bucket, Bucket=self.location.bucket)
            log_event(logger, "s3.bucket_created", bucket=self.location.bucket)
        except BotoCoreError as exc:
            raise StoreError(f"S3 unreachable: {exc}") from exc

    def read_manifest(self) -> dict[str, Any]:
        """The manifest, or an empty one when nothing was published yet."""
        try:
            obj = self.s3.get_object(Bucket=self.location.bucket, Key=self.location.key(MANIFEST))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return {"models": {}}
            err = exc.response.get("Error", {})
            raise StoreError(f"S3 refused reading the manifest: {err.get('Code')} {err.get('Message', '')}") from exc
        except BotoCoreError as exc:
            raise StoreError(f"S3 unreachable while reading the manifest: {exc}") from exc
        return json.loads(obj["Body"].read())

    def publish(self, archive: Path) -> dict[str, Any]:
        """Upload an archive, then record it in the manifest; returns the manifest entry."""
        card = read_model_card(archive)
        name = card["model_name"]
        size = archive.stat().st_size
        entry = {
            "file": archive.name,
            "version": card["version"],
            "sha256": file_sha256(archive),
            "size": size,
            "published_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "card": card,
        }
        key = self.location.key(archive.name)
        log_event(logger, "publish.start", model=name, version=entry["version"], uri=self.location.uri(archive.name))
        with _progress(size, f"upload {archive.name}") as bar:
            self._call(
                f"uploading {archive.name}",
                self.s3.upload_file,
                Filename=str(archive),
                Bucket=self.location.bucket,
                Key=key,
                Callback=bar.update,
            )
        manifest = self.read_manifest()
        manifest.setdefault("models", {})[name] = entry
        self._call(
            "writing the manifest",
            self.s3.put_object,
            Bucket=self.location.bucket,
            Key=self.location.key(MANIFEST),
            Body=json.dumps(manifest, indent=2).encode(),
            ContentType="application/json",
        )
        log_event(logger, "publish.done", model=name, version=entry["version"], sha256=entry["sha256"], bytes=size)
        return entry

    def download(self, entry: dict[str, Any], dest_dir: Path) -> Path:
        """Fetch one archive through a temp file, verify its sha256, then atomically move it into place."""
        dest_dir.mkdir(parents=True, exist_ok=True)
        target = dest_dir / entry["file"]
        fd, tmp_name = tempfile.mkstemp(prefix=f".{entry['file']}.", suffix=".part", dir=dest_dir)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            with _progress(int(entry["size"]), f"download {entry['file']}") as bar:
                self._call(
                    f"downloading {entry['file']}",
                    self.s3.download_file,
                    Bucket=self.location.bucket,
                    Key=self.location.key(entry["file"]),
                    Filename=str(tmp),
                    Callback=bar.update,
                )
            actual = file_sha256(tmp)
            if actual != entry["sha256"]:
                raise IntegrityError(
                    f"{entry['file']}: sha256 {actual} does not match the manifest's {entry['sha256']}; refused"
                )
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        log_event(logger, "download.done", file=entry["file"], version=entry["version"], sha256=entry["sha256"])
        return target
