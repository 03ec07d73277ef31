"""Helpers every page shares: the session's gateway client, the readiness banner, per-session result cache."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from contract.status import TaskEntry
from ui.client import GatewayClient, GatewayError

RECENT = 20  # latencies kept per task for the status page


def client() -> GatewayClient:
    if "client" not in st.session_state:
        st.session_state.client = GatewayClient()
    return st.session_state.client


def readiness_banner(info: TaskEntry) -> None:
    """Warn when the task's model (an entry of the gateway's `/v1/models`) has no ready worker yet, and say when
    a better version of it is being trained."""
    loaded = info.loaded
    if not loaded or not loaded.ready:
        st.warning(
            f"The {info.task} model is not ready yet; requests may fail until it is. Try again shortly.",
            icon=":material/hourglass_empty:",
        )
    training = training_text(info.training)
    if training:
        st.info(f"{training} Until it is published, the version serving now answers.", icon=":material/update:")


def training_text(training: dict[str, Any] | None) -> str | None:
    """A `/v1/models` entry's training status in words, or None when nothing is being trained for it."""
    if not training or training.get("stage") in (None, "done"):
        return None
    if training["stage"] == "failed":
        return f"Training its {training.get('recipe')} version failed (the supervisor's log says why)."
    if training["stage"] == "queued":
        return f"A better ({training.get('recipe')}) version is queued for training."
    done = f" {training['progress']:.0%}" if training.get("progress") is not None else ""
    left = f", about {max(1, round(training['eta_s'] / 60))} min left" if training.get("eta_s") else ""
    return f"A better ({training.get('recipe')}) version is being trained: {training['stage']}{done}{left}."


def model_caption(model: dict[str, Any]) -> str:
    """Which model answered: name, version, and the recipe that built it (a quick version says so)."""
    recipe = model.get("recipe")
    built = " (a quick version, served until a better one is ready)" if recipe == "quick" else ""
    built = built or (f" ({recipe} recipe)" if recipe else "")
    return f"model {model['name']} version {model['version']}{built}"


def cached(key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
    """Results per input for this browser session: a rerun of the same input does not call the API again."""
    store: dict[tuple[Any, ...], Any] = st.session_state.setdefault("results", {})
    if key not in store:
        store[key] = compute()
    return store[key]


def record_latency(task: str, results: list[dict[str, Any]], explained: bool = False) -> None:
    """Explanations are kept apart from predictions: at tens of model passes each, they would hide the
    predictions' latency."""
    key = f"{task} (explain)" if explained else task
    recent: dict[str, list[float]] = st.session_state.setdefault("latency", {})
    recent.setdefault(key, []).extend(r["latency_ms"] for r in results)
    recent[key] = recent[key][-RECENT:]


def show_error(exc: GatewayError) -> None:
    st.error(str(exc), icon=":material/warning:")
