"""Small files in the public originals' formats, made from the shared data, and a local server for them: what
`modelops data fetch` is tested against (no test reaches the internet)."""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from modelops.train.data import data_dir

HAR_NAMES = [
    "calling", "clapping", "cycling", "dancing", "drinking", "eating", "fighting", "hugging", "laughing",
    "listening_to_music", "running", "sitting", "sleeping", "texting", "using_laptop",
]  # fmt: skip


def imdb_tarball(path: Path, per_label: int, repeated: str) -> None:
    """aclImdb/train/{pos,neg}/<id>_<rating>.txt from the shared reviews, `repeated` written twice (the fetch
    drops it), and a test split and an unlabelled file the fetch must ignore."""
    with (data_dir() / "imdb" / "reviews.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    picked = {label: [r["text"] for r in rows if r["label"] == label][:per_label] for label in ("negative", "positive")}
    files = {
        f"aclImdb/train/{'pos' if label == 'positive' else 'neg'}/{i}_{8 if label == 'positive' else 2}.txt": text
        for label, texts in picked.items()
        for i, text in enumerate(texts)
    }
    files["aclImdb/train/pos/9000_9.txt"] = files["aclImdb/train/neg/9001_1.txt"] = repeated
    files["aclImdb/test/pos/0_10.txt"] = "a test-split review"
    files["aclImdb/train/unsup/0_0.txt"] = "an unlabelled review"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def tweets_csv(path: Path, rows: int) -> None:
    """Kaggle's columns and quoting, from the shared tweets."""
    with (data_dir() / "disaster" / "tweets.csv").open(newline="", encoding="utf-8") as handle:
        lines = list(csv.reader(handle))
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows(lines[: rows + 1])


def har_parquet(path: Path, per_label: int) -> None:
    """The Hugging Face copy's shape: an `image` struct of bytes and path, a `labels` index, the ClassLabel
    names in the schema's metadata."""
    images, labels = [], []
    for index, name in enumerate(HAR_NAMES):
        for photo in sorted((data_dir() / "pose" / name).glob("*.jpg"))[:per_label]:
            images.append({"bytes": photo.read_bytes(), "path": photo.name})
            labels.append(index)
    features = {"image": {"_type": "Image"}, "labels": {"names": HAR_NAMES, "_type": "ClassLabel"}}
    table = pa.table({"image": images, "labels": pa.array(labels, pa.int64())})
    table = table.replace_schema_metadata({"huggingface": orjson.dumps({"info": {"features": features}})})
    pq.write_table(table, path)


def originals_table(folder: Path, url: str, sha256: dict[str, str] | None = None) -> Path:
    """An originals.toml naming the files in `folder` as served at `url`, with their own checksums unless
    `sha256` says otherwise."""
    entries = [
        ("imdb", "aclImdb_v1.tar.gz", "imdb_tarball", ["imdb/reviews.csv", "imdb/reviews_extra.csv"]),
        ("disaster", "train.csv", "tweets_csv", ["disaster/tweets.csv"]),
        ("pose", "train-00000-of-00001.parquet", "har_parquet", ["pose/labels.csv"]),
    ]
    lines = []
    for name, file_name, layout, provides in entries:
        data = (folder / file_name).read_bytes()
        digest = (sha256 or {}).get(name) or hashlib.sha256(data).hexdigest()
        lines += [
            "[[original]]",
            f'name = "{name}"',
            f'description = "a small {name} original"',
            f'url = "{url}/{file_name}"',
            f'sha256 = "{digest}"',
            f"bytes = {len(data)}",
            f'layout = "{layout}"',
            f"provides = {orjson.dumps(provides).decode()}",
            "",
        ]
    table = folder.parent / f"originals-{len(list(folder.parent.glob('originals-*.toml')))}.toml"
    table.write_text("\n".join(lines), encoding="utf-8")
    return table


def make_originals(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    imdb_tarball(folder / "aclImdb_v1.tar.gz", per_label=90, repeated="the same review, posted twice")
    tweets_csv(folder / "train.csv", rows=600)
    har_parquet(folder / "train-00000-of-00001.parquet", per_label=12)


@contextmanager
def serving(folder: Path) -> Iterator[str]:
    """`folder` over HTTP on a free loopback port; yields its URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass
