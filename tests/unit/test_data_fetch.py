"""`modelops.datasets`: each original's layout on small files in its format, and the fetch against a local
HTTP server (the pinned table itself is checked for shape; no test reaches the internet)."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contract.catalog import load_catalog
from modelops.datasets.fetch import FetchError, Original, fetch, lacking, load_originals
from modelops.datasets.layouts import LayoutError, har_parquet, imdb_tarball, tweets_csv
from tests import originals as small


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_the_pinned_table_provides_every_built_in_dataset() -> None:
    provided = {path for o in load_originals() for path in o.provides}
    needed = {path for spec in load_catalog().values() for path in (spec.dataset, *spec.extra_datasets)}
    assert needed <= provided
    assert all(len(o.sha256) == 64 and o.url.startswith("https://") and o.bytes > 0 for o in load_originals())


def test_imdb_keeps_the_labelled_training_split_once_each(tmp_path: Path) -> None:
    archive = tmp_path / "aclImdb_v1.tar.gz"
    small.imdb_tarball(archive, per_label=30, repeated="posted twice")
    imdb_tarball(archive, tmp_path / "out")
    main, extra = _rows(tmp_path / "out/imdb/reviews.csv"), _rows(tmp_path / "out/imdb/reviews_extra.csv")
    assert [len(main), len(extra)] == [20, 40]  # a third of each label's 30 in the main file
    assert sum(r["label"] == "positive" for r in main) == 10
    texts = [r["text"] for r in main + extra]
    assert "posted twice" not in texts
    assert "a test-split review" not in texts
    assert "an unlabelled review" not in texts
    assert len(set(texts)) == 60
    source = _rows(tmp_path / "out/imdb/reviews_source.csv")
    assert [(s["row"], s["label"]) for s in source] == [(str(i), r["label"]) for i, r in enumerate(main)]
    assert all(s["source_path"].startswith("aclImdb/train/") for s in source)


def test_tweets_keep_kaggles_file_and_refuse_another_header(tmp_path: Path) -> None:
    original = tmp_path / "train.csv"
    small.tweets_csv(original, rows=20)
    tweets_csv(original, tmp_path / "out")
    assert (tmp_path / "out/disaster/tweets.csv").read_bytes() == original.read_bytes()
    original.write_text("text,target\nfire,1\n", encoding="utf-8")
    with pytest.raises(LayoutError, match="expected 'id,keyword,location,text,target'"):
        tweets_csv(original, tmp_path / "again")


def test_har_names_each_photo_by_the_files_own_class_names(tmp_path: Path) -> None:
    original = tmp_path / "train.parquet"
    small.har_parquet(original, per_label=2)
    har_parquet(original, tmp_path / "out")
    rows = _rows(tmp_path / "out/pose/labels.csv")
    assert len(rows) == 30
    assert {r["label"] for r in rows} == set(small.HAR_NAMES)
    assert all((tmp_path / "out/pose" / r["file"]).is_file() and r["file"].startswith(r["label"] + "/") for r in rows)
    pq.write_table(pa.table({"image": [{"bytes": b"x", "path": "a.jpg"}], "labels": [0]}), original)
    with pytest.raises(LayoutError, match="no Hugging Face ClassLabel names"):
        har_parquet(original, tmp_path / "bare")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    folder = tmp_path / "served"
    folder.mkdir()
    small.tweets_csv(folder / "train.csv", rows=30)
    with small.serving(folder) as url:
        yield folder, url


def _tweets(folder: Path, url: str, sha256: str | None = None) -> Original:
    data = (folder / "train.csv").read_bytes()
    return Original(
        "disaster", "tweets", f"{url}/train.csv", sha256 or hashlib.sha256(data).hexdigest(), len(data), "tweets_csv",
        ("disaster/tweets.csv",),
    )  # fmt: skip


def test_fetch_lays_out_what_it_downloaded_and_keeps_what_is_there(served: tuple[Path, str], tmp_path: Path) -> None:
    folder, url = served
    said: list[str] = []
    fetch([_tweets(folder, url)], tmp_path / "data", tmp_path / "cache", say=said.append)
    assert (tmp_path / "data/disaster/tweets.csv").read_bytes() == (folder / "train.csv").read_bytes()
    assert said[-1].startswith("data: disaster: laid out as disaster/tweets.csv")
    assert lacking([_tweets(folder, url)], tmp_path / "data") == []
    (tmp_path / "data/disaster/tweets.csv").write_text("mine", encoding="utf-8")
    fetch([_tweets(folder, url)], tmp_path / "data", tmp_path / "cache", say=said.append)
    assert (tmp_path / "data/disaster/tweets.csv").read_text(encoding="utf-8") == "mine"  # never overwritten
    assert not list((tmp_path / "data").glob(".fetch-*"))


def test_other_bytes_than_the_pinned_ones_are_refused(served: tuple[Path, str], tmp_path: Path) -> None:
    folder, url = served
    with pytest.raises(FetchError, match=r"disaster: the file from 127\.0\.0\.1:\d+ is not the pinned original"):
        fetch([_tweets(folder, url, sha256="0" * 64)], tmp_path / "data", tmp_path / "cache", say=print)
    assert not (tmp_path / "data" / "disaster").exists()
    assert not list((tmp_path / "cache").glob("*train.csv"))


def test_unreachable_says_so_in_one_line_and_a_mirror_replaces_the_host(
    served: tuple[Path, str], tmp_path: Path
) -> None:
    folder, url = served
    original = _tweets(folder, "https://nowhere.invalid/kaggle")
    with pytest.raises(FetchError) as failure:
        fetch([original], tmp_path / "data", tmp_path / "cache", say=print)
    message = str(failure.value)
    assert "\n" not in message
    assert "could not download from nowhere.invalid" in message
    assert "HTTPS_PROXY" in message
    assert "DATA_MIRROR to a folder URL holding train.csv" in message
    fetch([original], tmp_path / "data", tmp_path / "cache", say=print, mirror=url + "/")
    assert (tmp_path / "data/disaster/tweets.csv").is_file()


def test_a_layout_that_fails_leaves_nothing_half_done(tmp_path: Path) -> None:
    folder = tmp_path / "served"
    folder.mkdir()
    (folder / "train.csv").write_text("not,the,kaggle,file\n", encoding="utf-8")
    with small.serving(folder) as url, pytest.raises(FetchError, match="header 'not,the,kaggle,file'"):
        fetch([_tweets(folder, url)], tmp_path / "data", tmp_path / "cache", say=print)
    assert not (tmp_path / "data" / "disaster").exists()
    assert not list((tmp_path / "data").glob(".fetch-*"))


def test_a_table_that_is_not_one_is_named(tmp_path: Path) -> None:
    table = tmp_path / "originals.toml"
    table.write_text('[[original]]\nname = "x"\n', encoding="utf-8")
    with pytest.raises(FetchError, match="not a table of originals"):
        load_originals(table)
