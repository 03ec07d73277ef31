"""Service status: gateway health and readiness, loaded models and versions, this session's latencies."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from ui.client import GatewayError
from ui.common import client


def render(models: list[dict[str, Any]]) -> None:
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
    c2.metric("Models", "ready" if ready.body["status"] == "ready" else "not ready")
    torchserve = "reachable" if all(m["loaded"] for m in models) else "degraded"
    c3.metric("TorchServe", torchserve)
    if ready.body["status"] != "ready":
        st.warning(f"Not every model is ready: {ready.body.get('reason', '')}", icon=":material/hourglass_empty:")
    rows = [
        {
            "task": m["task"],
            "route": m["route"],
            "version": m["loaded"]["version"] if m["loaded"] else None,
            "ready workers": m["loaded"]["ready_workers"] if m["loaded"] else 0,
            "batch size": m["loaded"]["batch_size"] if m["loaded"] else None,
            "batch delay (ms)": m["loaded"]["max_batch_delay_ms"] if m["loaded"] else None,
        }
        for m in models
    ]
    st.subheader("Models")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
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
