"""The page of any image task: upload or camera, preview, ranked labels with a chart, and on request the heat
map of what the model looked at.

Everything task-specific (title, labels, route) comes from the task's `/v1/models` entry.
"""

from __future__ import annotations

import hashlib

import pandas as pd
import streamlit as st

from contract.status import TaskEntry
from contract.wire import IMAGE_SUFFIXES, explain_path
from ui.client import GatewayError
from ui.common import cached, client, model_caption, readiness_banner, record_latency, show_error
from ui.explanations import show_overlay

DEFAULT_TOP_K = 5


def _readable(label: str) -> str:
    return label.replace("_", " ")


def render(info: TaskEntry) -> None:
    """The page for one `kind: image` entry of `/v1/models`."""
    task, route, labels = info.task, info.route, info.labels
    st.title(info.description)
    st.caption(f"{len(labels)} labels: {', '.join(_readable(label) for label in labels)}")
    readiness_banner(info)
    source = st.radio("Photo from", ["Upload", "Camera"], horizontal=True, key=f"{task}-source")
    if source == "Upload":
        photo = st.file_uploader("Photo", type=list(IMAGE_SUFFIXES), key=f"{task}-upload")
    else:
        photo = st.camera_input("Take a photo", key=f"{task}-camera")
    top_k = st.slider("How many labels to show", 1, len(labels), min(DEFAULT_TOP_K, len(labels)), key=f"{task}-top-k")
    explain = st.toggle(
        "Explain",
        key=f"{task}-explain",
        help="Also show which parts of the photo carried the answer. Takes longer: the photo is classified again "
        "with each part greyed out.",
    )
    if photo is None:
        return
    data = photo.getvalue()
    columns = st.columns([2, 2, 3] if explain else [2, 3])
    columns[0].image(data, caption=photo.name, width="stretch")
    digest = hashlib.sha256(data).hexdigest()
    path, ask = (explain_path(route), client().explain_image) if explain else (route, client().classify_image)
    try:
        result = cached((path, digest, top_k), lambda: ask(route, data, photo.name, top_k))
    except GatewayError as exc:
        show_error(exc)
        return
    record_latency(task, [result], explained=explain)
    if explain:
        with columns[1]:
            show_overlay(result["explanation"], _readable(result["label"]))
    with columns[-1]:
        st.metric("Label", _readable(result["label"]))
        st.progress(result["score"], text=f"score {result['score']:.2f}")
        ranked = pd.DataFrame({"probability": {_readable(r["label"]): r["score"] for r in result["top_k"]}})
        st.bar_chart(ranked, horizontal=True, sort=False, height=60 + 30 * len(ranked))
        st.caption(model_caption(result["model"]))
