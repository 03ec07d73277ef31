"""The published model store in S3: versioned archives and a manifest that names each model's default.

Layout under `s3://$MODEL_BUCKET/$MODEL_PREFIX/`:

    model-store/<model>/<version>/<model>.mar           the archive TorchServe loads
    model-store/<model>/<version>/<model>.mar.sha256    its sha256 (for humans and other tools)
    model-store/<model>/<version>/model_card.json       how it was built and how well it does
    model-store/<model>/<version>/task_spec.json        the task it serves (the archive holds the same)
    models.json                                         the manifest (below)
    kserve/config/config.properties + kserve/model-store/<model>.mar   the defaults, for KServe (kserve.py)

    models.json                                         `contract.manifest.Manifest`

Archives are uploaded first and the manifest is written last, with a conditional write (`If-Match` on the
ETag read, or `If-None-Match: *` for the first one), so a reader never sees a version whose archive is
missing or partial, and two publishers cannot silently overwrite each other: the loser re-reads and retries.
Every download is checked against the manifest's sha256 before it is moved into place.

boto3 is configured only through the standard AWS variables (`AWS_ENDPOINT_URL` for a local S3 server), so
the same code talks to AWS S3 unchanged.
"""

from __future__ import annotations

import json
import logging
import os
import random
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from tqdm import tqdm

from contract.logs import log_event
from contract.manifest import Manifest, PublishedModel, PublishedVersion
from contract.model_card import MODEL_CARD, read_model_card
from contract.wire import TASK_SPEC_FILE
from modelops.store import StoreError
from modelops.tools import file_sha256

logger = logging.getLogger(__name__)

MANIFEST = "models.json"
MANIFEST_WRITE_ATTEMPTS = 8


class IntegrityError(StoreError):
    """A downloaded archive does not match the sha256 the manifest promises."""


class ConflictError(StoreError):
    """The manifest kept changing under us: another publisher won every retry."""


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

    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def uri(self, relative: str = "") -> str:
        return f"s3://{self.bucket}/{self.key(relative)}"


def local_archive(model: str, version: str) -> str:
    """A version's file name in a host's flat model store (TorchServe registers archives only from its
    top level), which is also the URL it is registered by."""
    return f"{model}-{version}.mar"


def archive_path(model: str, version: str) -> str:
    """A version's archive key relative to the prefix."""
    return f"model-store/{model}/{version}/{model}.mar"


def archived_task_spec(archive: Path) -> dict[str, Any] | None:
    """The task spec packaged inside a .mar, or None for an archive built before archives carried one."""
    with zipfile.ZipFile(archive) as zf:
        try:
            spec: dict[str, Any] = json.loads(zf.read(TASK_SPEC_FILE))
        except KeyError:
            return None
        return spec


def _progress(total: int, desc: str) -> tqdm:
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, leave=False)


class ModelStore:
    """Publish archives to, and fetch verified archives from, one S3 location."""

    def __init__(self, location: StoreLocation | None = None, client: Any | None = None) -> None:
        self.location = location or StoreLocation.from_env()
        self.s3 = client or boto3.client("s3")

    def call(self, what: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
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
            self.call("create_bucket", self.s3.create_bucket, Bucket=self.location.bucket)
            log_event(logger, "s3.bucket_created", bucket=self.location.bucket)
        except BotoCoreError as exc:
            raise StoreError(f"S3 unreachable: {exc}") from exc

    # --- the manifest ----------------------------------------------------------------------------------

    def get(self, relative: str) -> tuple[bytes, str] | None:
        """An object's body and ETag, or None when it does not exist."""
        try:
            obj = self.s3.get_object(Bucket=self.location.bucket, Key=self.location.key(relative))
            return obj["Body"].read(), obj["ETag"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            err = exc.response.get("Error", {})
            raise StoreError(f"S3 refused reading {relative}: {err.get('Code')} {err.get('Message', '')}") from exc
        except BotoCoreError as exc:
            raise StoreError(f"S3 unreachable while reading {relative}: {exc}") from exc

    def read_manifest_with_etag(self) -> tuple[Manifest, str | None]:
        """The manifest and its ETag; an empty manifest and None when nothing was published yet."""
        found = self.get(MANIFEST)
        if found is None:
            return Manifest(), None
        return Manifest.parse(found[0]), found[1]

    def read_manifest(self) -> Manifest:
        return self.read_manifest_with_etag()[0]

    def update_manifest(self, change: Callable[[Manifest], None], what: str) -> Manifest:
        """Read-modify-write the manifest with a conditional put; on a lost race, re-read and re-apply."""
        for attempt in range(1, MANIFEST_WRITE_ATTEMPTS + 1):
            manifest, etag = self.read_manifest_with_etag()
            change(manifest)
            condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            try:
                self.s3.put_object(
                    Bucket=self.location.bucket,
                    Key=self.location.key(MANIFEST),
                    Body=manifest.dump().encode(),
                    ContentType="application/json",
                    **condition,
                )
                return manifest
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code not in ("PreconditionFailed", "ConditionalRequestConflict", "412"):
                    raise StoreError(f"S3 refused writing the manifest: {code}") from exc
                log_event(logger, "manifest.conflict", logging.WARNING, what=what, attempt=attempt)
                time.sleep(random.uniform(0.05, 0.2) * attempt)
            except BotoCoreError as exc:
                raise StoreError(f"S3 unreachable while writing the manifest: {exc}") from exc
        raise ConflictError(f"{what}: the manifest changed on every one of {MANIFEST_WRITE_ATTEMPTS} attempts")

    # --- publish / rollback ----------------------------------------------------------------------------

    def _upload(self, path: Path, relative: str) -> None:
        size = path.stat().st_size
        with _progress(size, f"upload {path.name}") as bar:
            self.call(
                f"uploading {relative}",
                self.s3.upload_file,
                Filename=str(path),
                Bucket=self.location.bucket,
                Key=self.location.key(relative),
                Callback=bar.update,
            )

    def put(self, relative: str, body: bytes, content_type: str) -> None:
        self.call(
            f"writing {relative}",
            self.s3.put_object,
            Bucket=self.location.bucket,
            Key=self.location.key(relative),
            Body=body,
            ContentType=content_type,
        )

    def publish(self, archive: Path, make_default: bool = True) -> dict[str, Any]:
        """Upload a version (archive, sha256, card), then record it in the manifest; returns its entry."""
        card = read_model_card(archive)
        name, version = card["model_name"], card["version"]
        key = archive_path(name, version)
        folder = key.rsplit("/", 1)[0]
        digest = file_sha256(archive)
        entry = PublishedVersion(
            key=key,
            sha256=digest,
            size=archive.stat().st_size,
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        log_event(logger, "publish.start", model=name, version=version, uri=self.location.uri(key))
        self._upload(archive, key)
        self.put(f"{key}.sha256", f"{digest}  {archive.name}\n".encode(), "text/plain")
        self.put(f"{folder}/{MODEL_CARD}", json.dumps(card, indent=2).encode(), "application/json")
        spec = archived_task_spec(archive)
        if spec is not None:
            self.put(f"{folder}/{TASK_SPEC_FILE}", json.dumps(spec, indent=2).encode(), "application/json")

        def add(manifest: Manifest) -> None:
            model = manifest.models.setdefault(name, PublishedModel(default=version))
            model.versions[version] = entry
            if make_default:
                model.default = version

        self.update_manifest(add, f"publish {name} {version}")
        log_event(logger, "publish.done", model=name, version=version, sha256=digest, default=make_default)
        return {"model": name, "version": version, **entry.model_dump(), "card": card}

    def set_default(self, model: str, version: str | None = None) -> str:
        """Point the model's default at `version`, or at the version before the current default (rollback)."""
        chosen: dict[str, str] = {}

        def switch(manifest: Manifest) -> None:
            entry = manifest.models.get(model)
            if entry is None:
                raise StoreError(f"model {model!r} is not published")
            target = version or entry.previous_version()
            if target is None:
                raise StoreError(f"{model} has no version older than {entry.default} to roll back to")
            if target not in entry.versions:
                known = ", ".join(sorted(entry.versions))
                raise StoreError(f"{model} has no version {target!r} (published: {known})")
            chosen["from"], chosen["to"] = entry.default, target
            entry.default = target

        self.update_manifest(switch, f"set default of {model}")
        log_event(logger, "manifest.default_changed", model=model, previous=chosen["from"], default=chosen["to"])
        return chosen["to"]

    def keys(self, relative: str) -> list[str]:
        """Every object key under a prefix, relative to the store's prefix."""
        found: list[str] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.location.bucket, Prefix=self.location.key(relative))
        try:
            for page in pages:
                found += [item["Key"].removeprefix(self.location.key("")) for item in page.get("Contents", [])]
        except ClientError as exc:
            err = exc.response.get("Error", {})
            raise StoreError(f"S3 refused listing {relative}: {err.get('Code')}") from exc
        except BotoCoreError as exc:
            raise StoreError(f"S3 unreachable while listing {relative}: {exc}") from exc
        return found

    def model_card(self, model: str, version: str) -> dict[str, Any] | None:
        """The model card published beside a version's archive."""
        found = self.get(f"{archive_path(model, version).rsplit('/', 1)[0]}/{MODEL_CARD}")
        card: dict[str, Any] | None = json.loads(found[0]) if found else None
        return card

    def task_spec(self, model: str, version: str) -> dict[str, Any] | None:
        """The task spec published beside a version's archive; None for a version published without one."""
        found = self.get(f"{archive_path(model, version).rsplit('/', 1)[0]}/{TASK_SPEC_FILE}")
        if found is None:
            return None
        spec: dict[str, Any] = json.loads(found[0])
        return spec

    def unpublish(self, model: str) -> list[str]:
        """Take a model out of the manifest (each host's sync then stops serving it), then delete its objects;
        returns the versions it had."""
        removed: list[str] = []

        def drop(manifest: Manifest) -> None:
            entry = manifest.models.pop(model, None)
            if entry is None:
                raise StoreError(f"model {model!r} is not published")
            removed[:] = sorted(entry.versions)

        self.update_manifest(drop, f"unpublish {model}")
        prefix = self.location.key(f"model-store/{model}/")
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in self.call("listing", paginator.paginate, Bucket=self.location.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                self.call(
                    f"deleting {item['Key']}", self.s3.delete_object, Bucket=self.location.bucket, Key=item["Key"]
                )
        log_event(logger, "publish.removed", model=model, versions=removed)
        return removed

    # --- download --------------------------------------------------------------------------------------

    def download(self, entry: PublishedVersion, target: Path) -> Path:
        """Fetch one archive through a temp file beside `target`, verify its sha256, then rename atomically."""
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            with _progress(entry.size, f"download {entry.key}") as bar:
                self.call(
                    f"downloading {entry.key}",
                    self.s3.download_file,
                    Bucket=self.location.bucket,
                    Key=self.location.key(entry.key),
                    Filename=str(tmp),
                    Callback=bar.update,
                )
            actual = file_sha256(tmp)
            if actual != entry.sha256:
                raise IntegrityError(
                    f"{entry.key}: sha256 {actual} does not match the manifest's {entry.sha256}; refused"
                )
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        log_event(logger, "download.done", key=entry.key, sha256=entry.sha256)
        return target
