"""`modelops task add | list | remove`: a user's own labelled data to a served task, and back.

Adding checks the name and the data (`checks`), writes the task's spec (`spec`), trains it with its kind's
heads recipe, packages and publishes it to S3 with its spec beside it. Every host's sync then serves it and
every gateway routes it (they learn the task from what is served), with no restart. Removing takes it out of
the manifest: the syncs unregister it and the gateways drop its routes. The catalog's own tasks are defined in
`models.toml` and are neither added nor removed here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.catalog import (
    DEFAULT_RECIPE,
    RESERVED_TASK_NAMES,
    TASK_NAME_PATTERN,
    TaskSpec,
    parse_task_document,
)
from contract.wire import MAX_PIXELS
from modelops.store.s3 import ModelStore
from modelops.tasks import TaskError
from modelops.tasks.checks import DataReport, Problem, check_image_folder, check_name, check_table
from modelops.tasks.spec import new_task_spec

Say = Callable[[str], None]


@dataclass(frozen=True)
class DataOptions:
    """How to read the user's data: the columns of a table, its texts' length limit, the folds."""

    text_column: str = "text"
    label_column: str = "label"
    max_chars: int = 10_000
    folds: int = 5


def check_data(data: Path, options: DataOptions) -> tuple[str, DataReport]:
    """The kind the data is for (a folder: images; a file: texts) and what checking it found."""
    if data.is_dir():
        return "image", check_image_folder(data, MAX_PIXELS, options.folds)
    report = check_table(data, options.text_column, options.label_column, options.max_chars, options.folds)
    return "text", report


def _published_tasks(store: ModelStore) -> dict[str, dict[str, Any]]:
    """The spec of each published model's default version, by task name (models published without one are
    left out: they were built from the catalog before specs were published)."""
    found: dict[str, dict[str, Any]] = {}
    for name, entry in store.read_manifest().models.items():
        document = store.task_spec(name, entry.default)
        if document is not None:
            found[str(document.get("task", name))] = {**document, "_version": entry.default}
    return found


def name_problems(name: str, catalog: dict[str, TaskSpec], store: ModelStore, replace: bool) -> list[Problem]:
    if name in catalog:
        return [
            Problem(
                "error",
                f"task name {name!r}",
                "the task is defined in models.toml",
                f"Choose another name (retrain the catalog's task with `make build TASK={name}`)",
            )
        ]
    taken = set(catalog) | (set() if replace else set(_published_tasks(store)))
    return check_name(name, taken, RESERVED_TASK_NAMES, TASK_NAME_PATTERN)


def add_task(
    name: str,
    data: Path,
    options: DataOptions,
    catalog: dict[str, TaskSpec],
    store: ModelStore,
    work_dir: Path,
    say: Say,
    *,
    description: str | None = None,
    replace: bool = False,
    min_workers: int = 0,
) -> tuple[TaskSpec, dict[str, Any]]:
    """Check, train, package and publish a task from the user's data; returns its spec and its published
    entry (its card among it). Raises TaskError, having published nothing, when a check fails."""
    from modelops.build import build_archive

    started = time.perf_counter()
    problems = name_problems(name, catalog, store, replace)
    if not problems:
        kind, report = check_data(data, options)
        problems = report.problems
    for problem in problems:
        say(str(problem))
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise TaskError(f"{len(errors)} problem(s) to fix first; nothing was trained or published")
    labels = report.labels
    say(
        f"data: {len(report.records)} {report.unit}, {len(labels)} labels ("
        + ", ".join(f"{label} {count}" for label, count in sorted(labels.items()))
        + f"), checked in {time.perf_counter() - started:.0f} s"
    )
    spec = new_task_spec(
        name,
        kind,
        list(labels),
        data,
        description=description,
        text_column=options.text_column,
        label_column=options.label_column,
        max_chars=options.max_chars,
        folds=options.folds,
        min_workers=min_workers,
    )
    say(f"training {name} ({kind}, {options.folds}-fold cross-validation chooses every setting)...")
    archive = build_archive(spec, DEFAULT_RECIPE, Path("/"), work_dir / name)
    published = store.publish(archive)
    say(f"published {name} {published['version']} to {store.location.uri()} in {time.perf_counter() - started:.0f} s")
    say(summary(published["card"]))
    return spec, published


def summary(card: dict[str, Any]) -> str:
    """The card's headline: cross-validated accuracy with its interval, what was served, and the baselines."""
    validation = card.get("validation", {})
    low, high = validation.get("accuracy_ci95", [0, 0])
    cv = card.get("cross_validation", {})
    lines = [
        f"accuracy {validation.get('accuracy', 0):.3f} (95% interval {low:.3f}-{high:.3f}), "
        f"macro-F1 {validation.get('macro_f1', 0):.3f}, "
        + (f"{cv['folds']}-fold cross-validated on {cv['rows']} rows" if cv else "on the validation split")
    ]
    if "encoder" in cv:
        weight = cv["linear_weight"]
        lines.append(
            "served: the n-gram linear model alone (the encoder did not earn its cost)"
            if cv["encoder"] == "none"
            else "served: the frozen encoder's head alone (the n-gram linear model added nothing)"
            if weight == 0
            else f"served: the frozen encoder's head blended with the n-gram linear model (its weight {weight})"
        )
    for name, figures in cv.get("baselines", {}).items():
        low, high = figures["difference_ci95"]
        lines.append(
            f"against {name.replace('_', ' ')} ({figures['accuracy']:.3f}): {figures['difference']:+.3f} "
            f"(95% interval {low:+.3f} to {high:+.3f})"
        )
    return "\n".join(lines)


def list_tasks(catalog: dict[str, TaskSpec], store: ModelStore) -> list[dict[str, Any]]:
    """Every task: the catalog's and the published ones, with the version published as default and its
    headline accuracy."""
    published = _published_tasks(store)
    manifest = store.read_manifest().models
    rows = []
    for name in [*catalog, *sorted(set(published) - set(catalog))]:
        spec = find_task(name, catalog, store)
        entry = manifest.get(spec.model_name)
        rows.append(
            {
                "task": name,
                "kind": spec.kind,
                "labels": len(spec.labels),
                "source": "models.toml" if name in catalog else "task add",
                "version": entry.default if entry else None,
            }
        )
    return rows


def find_task(name: str, catalog: dict[str, TaskSpec], store: ModelStore) -> TaskSpec:
    """A task by name: the catalog's, else the spec a task added with `task add` was published with."""
    if name in catalog:
        return catalog[name]
    published = _published_tasks(store)
    if name not in published:
        known = ", ".join([*catalog, *sorted(set(published) - set(catalog))])
        raise TaskError(f"no task {name!r} (the tasks: {known})")
    return parse_task_document({k: v for k, v in published[name].items() if k != "_version"})


def remove_task(name: str, catalog: dict[str, TaskSpec], store: ModelStore) -> list[str]:
    """Unpublish a task added with `task add`; returns the versions it had."""
    if name in catalog:
        raise TaskError(f"task {name!r} is defined in models.toml: remove it there (and its model with S3 tools)")
    published = _published_tasks(store)
    if name not in published:
        known = ", ".join(sorted(set(published) - set(catalog))) or "none"
        raise TaskError(f"no task {name!r} was added (added tasks: {known})")
    return store.unpublish(str(published[name]["model_name"]))
