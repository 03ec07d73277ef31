from __future__ import annotations

import json

import pytest

from contract.catalog import (
    SERVED_TASKS_ENV,
    CatalogError,
    load_catalog,
    parse_catalog,
    parse_task_document,
    served_catalog,
    task_document,
)

ENTRY = """
[tasks.{name}]
description = "d"
labels = ["a", "b"]
base_checkpoint = "pypi:x"
dataset = "x.csv"
kind = "text"
input_column = "text"
label_column = "label"
batch_size = 4
max_batch_delay_ms = 5
workers = 1
threads_per_worker = 1
response_timeout_s = 10

[tasks.{name}.text]
max_chars = 10

[tasks.{name}.recipes.fast]
epochs = 1
learning_rate = 1e-4
batch_size = 16
max_length = 32
"""


def test_repo_catalog_names_every_task_with_routes_labels_and_recipes() -> None:
    catalog = load_catalog()
    assert catalog["sentiment"].route == "/v1/sentiment"
    assert catalog["sentiment"].labels == ("negative", "positive")
    assert catalog["disaster"].labels == ("not_disaster", "disaster")
    assert catalog["pose"].kind == "image"
    assert len(catalog["pose"].labels) == 15
    for name in ("sentiment", "disaster"):
        quick = catalog[name].recipe("fast")
        assert quick.max_length > 0
        assert catalog[name].serving_config("fast").max_length == quick.max_length
    pose = catalog["pose"].serving_config("fast")
    assert (pose.architecture, pose.image_size, pose.resize_to) == ("efficientnet-lite0", 224, 256)


def test_kind_specific_fields_are_required() -> None:
    with pytest.raises(CatalogError, match=r"text\.max_chars: Field required"):
        parse_catalog(ENTRY.format(name="one").replace("max_chars = 10\n", ""))
    with pytest.raises(CatalogError, match="kind must be one of"):
        parse_catalog(ENTRY.format(name="one").replace('kind = "text"', 'kind = "audio"'))


def test_label_values_map_raw_dataset_labels() -> None:
    disaster = load_catalog()["disaster"]
    assert disaster.label_for_value("1") == "disaster"
    assert disaster.label_for_value("0") == "not_disaster"
    with pytest.raises(CatalogError, match="unknown label value '2'"):
        disaster.label_for_value("2")
    assert load_catalog()["sentiment"].label_for_value("positive") == "positive"


def test_routes_model_names_and_handlers_are_derived_and_checked() -> None:
    spec = parse_catalog(ENTRY.format(name="one"))["one"]
    assert (spec.route, spec.model_name, spec.handler) == ("/v1/one", "one", "text_handler.py")
    named = ENTRY.format(name="one").replace('description = "d"', 'description = "d"\nroute = "/v1/one"')
    assert parse_catalog(named)["one"].route == "/v1/one"
    with pytest.raises(CatalogError, match=r"route: a task's route is /v1/<task> \(/v1/one\), not /v1/x"):
        parse_catalog(named.replace('"/v1/one"', '"/v1/x"'))
    with pytest.raises(
        CatalogError, match=r"handler: text tasks are served by text_handler\.py, not image_handler\.py"
    ):
        parse_catalog(
            ENTRY.format(name="one").replace('description = "d"', 'description = "d"\nhandler = "image_handler.py"')
        )
    twice = ENTRY.format(name="one") + ENTRY.format(name="two").replace(
        'description = "d"', 'description = "d"\nmodel_name = "one"'
    )
    with pytest.raises(CatalogError, match="model_name must be unique across tasks, repeated: one"):
        parse_catalog(twice)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("status", "task name 'status' is taken by the API or the UI"),
        ("models", "task name 'models' is taken by the API or the UI"),
        ("Tickets", "String should match pattern"),
        ("support-tickets", "String should match pattern"),
    ],
)
def test_task_names_are_safe_and_clash_with_no_route_or_page(name: str, message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        parse_catalog(ENTRY.format(name=name).replace(f"[tasks.{name}]", f'[tasks."{name}"]'))


def test_a_heads_recipe_and_a_task_document_round_trip() -> None:
    heads = ENTRY.format(name="one").split("[tasks.one.recipes.fast]")[0] + (
        '[tasks.one.recipes.fast]\nmethod = "heads"\nfolds = 3\nmax_length = 64\n'
    )
    spec = parse_catalog(heads)["one"]
    recipe = spec.recipe("fast")
    assert (type(recipe).__name__, recipe.folds, recipe.encoder) == ("TextHeadsRecipe", 3, True)
    assert parse_task_document(json.loads(json.dumps(task_document(spec)))) == spec
    for name, known in load_catalog().items():
        assert parse_task_document(json.loads(json.dumps(task_document(known)))) == known, name
    with pytest.raises(CatalogError, match="folds: Input should be greater than or equal to 2"):
        parse_catalog(heads.replace("folds = 3", "folds = 1"))


def test_missing_fields_are_named() -> None:
    with pytest.raises(CatalogError, match=r"'one': batch_size: Field required"):
        parse_catalog(ENTRY.format(name="one").replace("batch_size = 4\n", ""))


def test_unknown_recipe_lists_known_ones() -> None:
    spec = parse_catalog(ENTRY.format(name="one"))["one"]
    with pytest.raises(CatalogError, match="no recipe 'full'"):
        spec.recipe("full")


def test_label_values_must_pair_with_labels() -> None:
    text = ENTRY.format(name="one").replace('labels = ["a", "b"]', 'labels = ["a", "b"]\nlabel_values = ["0"]')
    with pytest.raises(CatalogError, match="pair one to one"):
        parse_catalog(text)


def test_every_task_needs_the_recipe_make_run_builds() -> None:
    entry = ENTRY.format(name="one")
    with pytest.raises(CatalogError, match=r"needs a \[tasks.one.recipes.fast\] recipe"):
        parse_catalog(entry.replace("[tasks.one.recipes.fast]", "[tasks.one.recipes.full]"))
    with pytest.raises(
        CatalogError, match=r"recipes\.other\.\[key\]: Input should be 'quick', 'fast', 'full' or 'gpu'"
    ):
        parse_catalog(entry.replace("[tasks.one.recipes.fast]", "[tasks.one.recipes.other]"))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("head_tokens = 31", "head_tokens must leave room for a tail"),
        ("linear_member = true", "needs dev_examples"),
    ],
)
def test_inconsistent_recipe_settings_are_rejected(extra: str, message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        parse_catalog(ENTRY.format(name="one") + extra + "\n")


def test_serving_config_carries_the_recipe_settings_the_handler_needs() -> None:
    catalog = load_catalog()
    sentiment = catalog["sentiment"]
    served = sentiment.serving_config("full")
    assert served.head_tokens == sentiment.recipe("full").head_tokens
    assert served.normalise == "none"
    assert catalog["disaster"].serving_config("fast").normalise == "tweet"
    pose = catalog["pose"]
    assert pose.serving_config("full").tta_flip is True


def test_unknown_normalisations_and_misplaced_keys_are_rejected() -> None:
    entry = ENTRY.format(name="one")
    with pytest.raises(CatalogError, match=r"text\.normalise: Input should be 'none' or 'tweet'"):
        parse_catalog(entry.replace("max_chars = 10", 'max_chars = 10\nnormalise = "emoji"'))
    # a text setting at the task's level (a typo's usual shape) is named, not ignored
    with pytest.raises(CatalogError, match="'one': normalise: Extra inputs are not permitted"):
        parse_catalog(entry.replace("response_timeout_s = 10", 'response_timeout_s = 10\nnormalise = "tweet"'))


def test_runtime_defaults_to_torch_and_unknown_runtimes_are_rejected() -> None:
    assert parse_catalog(ENTRY.format(name="one"))["one"].runtime == "torch"
    with_runtime = ENTRY.format(name="one").replace(
        "response_timeout_s = 10", 'response_timeout_s = 10\nruntime = "{}"'
    )
    with pytest.raises(CatalogError, match=r"judged on the dev slice, so recipe\(s\) fast need dev_examples"):
        parse_catalog(with_runtime.format("onnx-int8"))
    with_dev = with_runtime.replace("[tasks.one.recipes.fast]", "[tasks.one.recipes.fast]\ndev_examples = 10")
    assert parse_catalog(with_dev.format("onnx-int8"))["one"].runtime == "onnx-int8"
    with pytest.raises(CatalogError, match="runtime: Input should be 'torch', 'onnx' or 'onnx-int8'"):
        parse_catalog(with_runtime.format("tensorrt"))


def test_text_examples_must_carry_a_catalog_label_and_fit_the_limit() -> None:
    entry = ENTRY.format(name="one")
    good = entry.replace("max_chars = 10\n", 'max_chars = 10\nexamples = [{text = "fine", label = "a"}]\n')
    assert parse_catalog(good)["one"].text.examples[0].label == "a"
    with pytest.raises(CatalogError, match="label 'c' is not one of"):
        parse_catalog(good.replace('label = "a"', 'label = "c"'))
    with pytest.raises(CatalogError, match=r"longer than max_chars \(10\)"):
        parse_catalog(good.replace('"fine"', '"far too long here"'))


def test_the_served_tasks_are_the_catalogs_named_in_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SERVED_TASKS_ENV, raising=False)
    assert list(served_catalog()) == list(load_catalog())
    monkeypatch.setenv(SERVED_TASKS_ENV, "")
    assert served_catalog() == {}
    monkeypatch.setenv(SERVED_TASKS_ENV, " pose, sentiment ")
    assert list(served_catalog()) == ["sentiment", "pose"]  # in the catalog's order
    monkeypatch.setenv(SERVED_TASKS_ENV, "sentiment,tickets")
    with pytest.raises(CatalogError, match="TASKS: no catalog task tickets; the catalog's tasks are sentiment"):
        served_catalog()
