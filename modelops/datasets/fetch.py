"""Download the built-in tasks' public originals, verify them against pinned checksums and lay them out in the
data folder, so that a clone without a hand-made data folder trains the built-ins.

pooch does the download (requests underneath: `HTTPS_PROXY` and friends apply) and refuses a file whose SHA-256
is not the pinned one; downloads are kept in the stack's cache (`var/cache/originals`), so a layout that
failed is retried without downloading again. Each original is laid out in a staging folder and moved into
place file by file, the files the catalog names last: a data folder never holds half an original, and nothing
a user put there is overwritten.
"""

from __future__ import annotations

import logging
import os
import shutil
import tomllib
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pooch
import requests

from modelops.datasets.layouts import LAYOUTS, LayoutError

ORIGINALS_FILE = Path(__file__).with_name("originals.toml")
ORIGINALS_CACHE = "cache/originals"  # under the stack's state folder
MIRROR_ENV = "DATA_MIRROR"
ORIGINALS_ENV = "DATA_ORIGINALS"  # another table of the same shape: files of one's own, their checksums
# a connection that does not open in 15 s is not going to: offline or behind a proxy
TIMEOUT_S = (15.0, 120.0)


class FetchError(Exception):
    """An original could not be had: unreachable, other bytes than the pinned ones, or not in its format."""


@dataclass(frozen=True)
class Original:
    name: str
    description: str
    url: str
    sha256: str
    bytes: int
    layout: str
    provides: tuple[str, ...]

    @property
    def file_name(self) -> str:
        return Path(urlsplit(self.url).path).name

    def source(self, mirror: str | None) -> str:
        """Its URL, or the mirror's copy of the same file."""
        return f"{mirror.rstrip('/')}/{self.file_name}" if mirror else self.url


def load_originals(path: Path | None = None) -> list[Original]:
    """The pinned table (`originals.toml`), or another of the same shape (`path`, else `$DATA_ORIGINALS`)."""
    path = path or Path(os.environ.get(ORIGINALS_ENV) or ORIGINALS_FILE)
    try:
        entries = tomllib.loads(path.read_text(encoding="utf-8")).get("original", [])
        originals = [Original(**{**entry, "provides": tuple(entry["provides"])}) for entry in entries]
    except (OSError, tomllib.TOMLDecodeError, TypeError, KeyError) as exc:
        raise FetchError(f"{path}: not a table of originals ({exc}); see modelops/datasets/originals.toml") from exc
    unknown = sorted({o.layout for o in originals} - set(LAYOUTS))
    if unknown:
        raise FetchError(f"{path}: unknown layout {', '.join(unknown)} (known: {', '.join(LAYOUTS)})")
    return originals


def lacking(originals: Iterable[Original], root: Path, wanted: Collection[str] | None = None) -> list[Original]:
    """The originals that provide a file missing from `root`: any of theirs, or only of the `wanted` paths."""
    return [o for o in originals if any(not (root / p).exists() for p in o.provides if wanted is None or p in wanted)]


def fetch(
    originals: Iterable[Original],
    root: Path,
    cache: Path,
    say: Callable[[str], None] = print,
    mirror: str | None = None,
) -> None:
    """Download, verify and lay out each original into `root`; `FetchError` on the first that fails (the ones
    before it stay laid out)."""
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV) or None
    pooch.get_logger().setLevel(logging.WARNING)
    for original in originals:
        url = original.source(mirror)
        size = f"{original.bytes / 2**20:.0f} MiB" if original.bytes >= 2**20 else f"{original.bytes / 2**10:.0f} KiB"
        say(f"data: {original.name}: {original.description}, {size} from {url}")
        archive = _download(original, url, cache)
        staging = root / f".fetch-{original.name}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            LAYOUTS[original.layout](archive, staging)
            _move_into_place(staging, root, original.provides)
        except (LayoutError, OSError) as exc:
            raise FetchError(f"{original.name}: {exc}") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        say(f"data: {original.name}: laid out as {', '.join(original.provides)} in {root}")


def _download(original: Original, url: str, cache: Path) -> Path:
    host = urlsplit(url).netloc
    try:
        return Path(
            pooch.retrieve(
                url,
                known_hash=f"sha256:{original.sha256}",
                fname=f"{original.name}-{original.file_name}",
                path=cache,
                downloader=pooch.HTTPDownloader(progressbar=False, timeout=TIMEOUT_S),
            )
        )
    except requests.RequestException as exc:
        reason = type(exc).__name__ if not isinstance(exc, requests.HTTPError) else str(exc).split(" for url")[0]
        raise FetchError(
            f"{original.name}: could not download from {host} ({reason}): offline or behind a proxy? Set "
            f"HTTPS_PROXY, or {MIRROR_ENV} to a folder URL holding {original.file_name}, or place the data "
            "yourself (docs/models.md#training-data)"
        ) from exc
    except ValueError as exc:  # pooch: the downloaded bytes' hash is not the pinned one (the file is removed)
        raise FetchError(
            f"{original.name}: the file from {host} is not the pinned original (SHA-256 differs): not used"
        ) from exc


def _move_into_place(staging: Path, root: Path, provides: tuple[str, ...]) -> None:
    """Every staged file to the same place under `root` unless one is there already, the provided ones last."""
    staged = sorted(p for p in staging.rglob("*") if p.is_file())
    last = {staging / path for path in provides}
    missing = sorted(last - set(staged))
    if missing:
        raise LayoutError(f"the layout wrote no {', '.join(str(p.relative_to(staging)) for p in missing)}")
    for path in [p for p in staged if p not in last] + [p for p in staged if p in last]:
        target = root / path.relative_to(staging)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
