"""The serving config a handler reads from its archive's `task.json`: typed, defaults for what older archives
did not write, and refusals that name the file and the setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contract.catalog import load_catalog
from contract.serving import ImageServing, TextServing, read_serving, serving_from, with_changes


def test_the_packaged_config_reads_back_as_the_same_record(tmp_path: Path) -> None:
    catalog = load_catalog()
    for name in ("sentiment", "pose"):
        config = catalog[name].serving_config("fast")
        (tmp_path / "task.json").write_text(config.to_json(), encoding="utf-8")
        assert read_serving(tmp_path) == config
    assert isinstance(read_serving(tmp_path), ImageServing)


def test_an_older_archive_without_the_later_fields_gets_what_it_meant() -> None:
    older = {"task": "t", "model_name": "t", "labels": ["a", "b"], "max_length": 64, "max_chars": 500}
    config = serving_from(older)
    assert isinstance(config, TextServing)
    assert (config.runtime, config.temperature, config.linear_weight, config.encoder) == (
        "torch",
        1.0,
        0.0,
        "finetuned",
    )
    assert config.labels == ("a", "b")


def test_unknown_and_missing_settings_are_named(tmp_path: Path) -> None:
    (tmp_path / "task.json").write_text(
        json.dumps(
            {"task": "t", "kind": "text", "model_name": "t", "labels": [], "max_length": 8, "max_chars": 9, "blend": 1}
        )
    )
    with pytest.raises(ValueError, match=r"task.json: unknown serving setting\(s\) blend"):
        read_serving(tmp_path)
    with pytest.raises(ValueError, match="max_chars"):
        serving_from({"task": "t", "kind": "text", "model_name": "t", "labels": [], "max_length": 8})
    with pytest.raises(ValueError, match="unknown kind 'audio'"):
        serving_from({"task": "t", "kind": "audio"})


def test_training_choices_apply_by_name_and_typos_are_refused() -> None:
    config = load_catalog()["sentiment"].serving_config("fast")
    assert isinstance(config, TextServing)
    chosen = with_changes(config, {"linear_weight": 0.3, "temperature": 1.2})
    assert isinstance(chosen, TextServing)
    assert (chosen.linear_weight, chosen.temperature, chosen.max_length) == (0.3, 1.2, config.max_length)
    with pytest.raises(ValueError, match="linear_wieght"):
        with_changes(config, {"linear_wieght": 0.3})
