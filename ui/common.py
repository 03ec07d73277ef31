"""Helpers every page shares: the session's gateway client, the status banner, per-session result cache."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from ui.client import GatewayClient, GatewayError

RECENT = 20  # latencies kept per task for the status page


def client() -> GatewayClient:
    if "client" not in st.session_state:
        st.session_state.client = GatewayClient()
    return st.session_state.client


def task_info(task: str) -> dict[str, Any] | None:
    """The task's entry from the gateway's `/v1/models` (route, labels, loaded version), or None if the
    gateway cannot be reached (a banner says so)."""
    try:
        models = {m["task"]: m for m in client().models()}
    except GatewayError as exc:
        st.error(f"The classification service is unavailable. {exc}", icon=":material/error:")
        return None
    info = models.get(task)
    if info is None:
        st.error(f"The service has no '{task}' model.", icon=":material/error:")
    elif not info["loaded"] or not info["loaded"]["ready"]:
        st.warning(
            f"The {task} model is not ready yet; requests may fail until it is. Try again shortly.",
            icon=":material/hourglass_empty:",
        )
    return info


def cached(key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
    """Results per input for this browser session: a rerun of the same input does not call the API again."""
    store: dict[tuple[Any, ...], Any] = st.session_state.setdefault("results", {})
    if key not in store:
        store[key] = compute()
    return store[key]


def record_latency(task: str, results: list[dict[str, Any]]) -> None:
    recent: dict[str, list[float]] = st.session_state.setdefault("latency", {})
    recent.setdefault(task, []).extend(r["latency_ms"] for r in results)
    recent[task] = recent[task][-RECENT:]


def show_error(exc: GatewayError) -> None:
    st.error(str(exc), icon=":material/warning:")
