"""Service status: gateway health and readiness, loaded models and versions, this session's latencies, and each
serving model's card (how it was built, how well it did on validation)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from contract.status import TaskEntry
from ui.client import GatewayError
from ui.common import client, training_text


def render(models: list[TaskEntry]) -> None:
    """`models`: the gateway's `/v1/models` entries, as fetched for this run's navigation."""
    st.title("Service status")
    gateway = client()
    st.caption(f"Gateway: {gateway.base_url}")
    try:
        health = gateway.health()
        ready = gateway.readiness()
    except GatewayError as exc:
        st.error(f"The gateway is down or unreachable. {exc}", icon=":material/error:")
        return
    c1, c2, c3 = st.columns(3)
    c1.metric("Gateway", "up", f"{health.seconds * 1000:.0f} ms round trip", delta_color="off", delta_arrow="off")
    c2.metric("Models", "ready" if ready.status == "ready" else "not ready")
    torchserve = "reachable" if all(m.loaded for m in models) else "degraded"
    c3.metric("TorchServe", torchserve)
    if ready.status != "ready":
        st.warning(f"Not every model is ready: {ready.reason or ''}", icon=":material/hourglass_empty:")
    st.subheader("Models")
    shown = _filtered(models)
    st.dataframe(pd.DataFrame([_row(m) for m in shown]), hide_index=True, width="stretch")
    _recent_latency()
    cold = [m.task for m in shown if m.scaling and m.scaling.state == "cold"]
    _model_cards([m.task for m in shown if m.task not in cold])
    if cold:
        _cold_card(cold)


# Past this many tasks the page offers a search box: a platform of many small classifiers stays readable.
SEARCH_FROM = 8


def _filtered(models: list[TaskEntry]) -> list[TaskEntry]:
    """The tasks whose name, description or state holds the search text (every task when there are few)."""
    if len(models) < SEARCH_FROM:
        return models
    wanted = st.text_input("Find a task", key="status-search", placeholder="name, description or state").lower()
    found = [m for m in models if wanted in f"{m.task} {m.description} {_state(m)}".lower()]
    st.caption(f"{len(found)} of {len(models)} tasks")
    return found


def _state(entry: TaskEntry) -> str:
    if entry.scaling is None:
        return "ready" if entry.loaded and entry.loaded.ready else "not ready"
    return entry.scaling.state


def _row(m: TaskEntry) -> dict[str, Any]:
    """One task's line: its version and batching, and where it stands with the scaler (state, workers, last
    use, memory) when the gateway scales it."""
    scaling = m.scaling
    return {
        "task": m.task,
        "state": _state(m),
        "version": m.loaded.version if m.loaded else None,
        "workers": scaling.workers if scaling else (m.loaded.ready_workers if m.loaded else 0),
        "min-max workers": f"{scaling.min_workers}-{scaling.max_workers}" if scaling else None,
        "last used": _ago(scaling.idle_s) if scaling else None,
        "memory (MB)": round(scaling.memory_mb) if scaling else None,
        "batch size": m.loaded.batch_size if m.loaded else None,
        "route": m.route,
        "training": training_text(m.training),
    }


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _cold_card(cold: list[str]) -> None:
    """Cold tasks' cards on request: reading a card the gateway has not seen yet starts the task's worker."""
    st.caption(
        f"{len(cold)} task(s) are scaled to zero: their cards are shown on request (the gateway may start a "
        "worker to read one)."
    )
    task = st.selectbox("Card of a cold task", cold, index=None, key="status-cold-card")
    if task:
        _model_cards([task])


def _recent_latency() -> None:
    st.subheader("Recent latency (this session)")
    recent: dict[str, list[float]] = st.session_state.get("latency", {})
    if not recent:
        st.caption("No requests yet in this session: classify something on another page.")
        return
    summary = [
        {
            "task": task,
            "requests": len(values),
            "last (ms)": values[-1],
            "median (ms)": float(pd.Series(values).median()),
        }
        for task, values in recent.items()
    ]
    st.dataframe(pd.DataFrame(summary), hide_index=True, width="stretch")


def _formatted(value: float | None, spec: str) -> str | None:
    return None if value is None else format(value, spec)


def _interval(bounds: list[float] | None) -> str | None:
    return f"{bounds[0]:.1%} to {bounds[1]:.1%}" if bounds and len(bounds) == 2 else None


def served_validation(card: dict[str, Any]) -> dict[str, Any]:
    """The validation figures of the runtime that answers callers. An optimised variant (int8) has its own, and
    its scores are what callers get; the card's `validation` is the fp32 model's it was made from, which is also
    what a torch-served model or an older card (a variant entry without figures) shows."""
    runtime = card.get("runtime") or {}
    served = (runtime.get("variants") or {}).get(runtime.get("served")) or {}
    return served if "accuracy_ci95" in served else card.get("validation") or {}


def card_figures(answer: dict[str, Any]) -> dict[str, str | None]:
    """The headline figures of one task's card (`GET /v1/models/{task}`), as text; what a card lacks (an older
    build, a model without a runtime choice) stays empty instead of failing the page."""
    card = answer.get("card") or {}
    validation, data = served_validation(card), card.get("data") or {}
    return {
        "version": answer.get("version") or card.get("version"),
        "recipe": (card.get("recipe") or {}).get("name"),
        "base checkpoint": card.get("base_checkpoint"),
        "built at": card.get("built_at"),
        "accuracy": _formatted(validation.get("accuracy"), ".1%"),
        "accuracy, 95% interval": _interval(validation.get("accuracy_ci95")),
        "macro-F1": _formatted(validation.get("macro_f1"), ".3f"),
        "ECE": _formatted(validation.get("ece"), ".3f"),
        "runtime served": (card.get("runtime") or {}).get("served"),
        "train examples": _formatted(data.get("train_examples_used"), ","),
        "validation examples": _formatted(data.get("validation_examples_used"), ","),
        # a task added from a user's data is measured by cross-validation on all its rows, none held out
        "measured on": None
        if not validation.get("accuracy_ci95")
        else "cross-validation"
        if card.get("evaluation") == "cross-validation"
        else "validation split",
    }


def _class_figures(task: str, validation: dict[str, Any]) -> None:
    """Per-class precision / recall / F1 and the confusion matrix: where a model's accuracy comes from."""
    per_class, confusion = validation.get("per_class"), validation.get("confusion")
    if not per_class and not confusion:
        return
    with st.expander(f"{task}: per-class figures and confusion matrix"):
        if per_class:
            per_label = pd.DataFrame.from_dict(per_class, orient="index").rename_axis("label")
            st.dataframe(per_label, width="stretch", height="content")
        if confusion:
            labels = validation.get("labels")
            st.caption("Confusion matrix on held-out rows: rows are the true labels, columns the predicted.")
            st.dataframe(pd.DataFrame(confusion, index=labels, columns=labels), width="stretch", height="content")


def _model_cards(tasks: list[str]) -> None:
    """Each serving model's card, asked for per task: one task whose card cannot be read gets a warning, the
    others are still shown."""
    st.subheader("Model cards")
    answers: dict[str, dict[str, Any]] = {}
    for task in tasks:
        try:
            answers[task] = client().model_card(task)
        except GatewayError as exc:
            st.warning(f"The {task} model card is not available. {exc}", icon=":material/description:")
    if not answers:
        return
    st.caption(
        "Figures of the serving version in the runtime it is served with, measured when it was built on rows it "
        "was not fitted on (a held-out validation split, or for a task added from your own data, each row held "
        "out once by cross-validation): accuracy with its 95% interval, macro-F1 and ECE (expected calibration "
        "error: how far its scores are from how often it is right)."
    )
    # a column per task: the figures read down, and tasks compare side by side
    figures = pd.DataFrame({task: card_figures(answer) for task, answer in answers.items()})
    st.dataframe(figures.rename_axis("figure"), width="stretch", height="content", placeholder="-")
    for task, answer in answers.items():
        _class_figures(task, served_validation(answer.get("card") or {}))
