"""Which S3 a `modelops` command talks to: the one the caller's environment names, else the local stack's, by one
rule that every command follows (a command that chose otherwise would publish to one S3 and roll back on
another). Each command's work is replaced by a recorder of the S3 variables it would run with."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelops import cli
from modelops.local.s3 import OWN_S3_VARIABLES

Parser = argparse.ArgumentParser
LOCAL = {"AWS_ENDPOINT_URL": "http://127.0.0.1:8333", "AWS_ACCESS_KEY_ID": "local-key"}


def _leaves(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()) -> Iterator[tuple[list[str], Parser]]:
    """Each command of the CLI as the words that name it (`task add`, `sync`, ...) and its own parser."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _leaves(child, (*words, name))
            return
    yield list(words), parser


def _commands() -> list[list[str]]:
    """Every command that may touch S3."""
    return [words for words, _ in _leaves(cli.build_parser()) if words[0] not in cli.OWN_S3_SETUP]


def _seen_by(words: list[str], state: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, str]:
    for name in [*OWN_S3_VARIABLES, "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"]:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("STACK_STATE_DIR", str(state))
    seen: dict[str, str] = {}
    parser = cli.build_parser()

    def record(_args: argparse.Namespace) -> None:
        seen.update({k: os.environ[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID") if k in os.environ})

    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    for _, leaf in _leaves(parser):
        leaf.set_defaults(func=record)
    required = {
        "task add": ["x", "--data", "d.csv"],
        "task remove": ["x"],
        "rollback": ["sentiment"],
        "train": ["--task", "sentiment", "--out", "o"],
        "package": ["--task", "sentiment", "--trained", "t"],
        "publish": ["a.mar"],
        "evaluate": ["--task", "sentiment", "--data", "d.csv"],
    }
    extra = required.get(" ".join(words), [])
    try:
        cli.main([*words, *extra])
    except SystemExit as exc:  # a command with required arguments this table does not know
        raise AssertionError(f"`modelops {' '.join(words)}` needs arguments: add them to `required`") from exc
    return seen


@pytest.mark.parametrize("words", _commands(), ids=" ".join)
def test_every_command_uses_the_named_s3_else_the_local_one(
    words: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "local-s3.env").write_text("".join(f"{k}={v}\n" for k, v in LOCAL.items()))
    assert _seen_by(words, tmp_path, monkeypatch) == LOCAL
    assert _seen_by(words, tmp_path, monkeypatch, AWS_ACCESS_KEY_ID="mine") == {"AWS_ACCESS_KEY_ID": "mine"}
    assert _seen_by(words, tmp_path, monkeypatch, AWS_PROFILE="prod") == {}
    assert _seen_by(words, tmp_path, monkeypatch, MODEL_BUCKET="my-models") == {}  # a role or SSO names its bucket
    assert _seen_by(words, tmp_path / "no-stack", monkeypatch) == {}
