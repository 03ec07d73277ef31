"""The photo classifier page: upload or camera, preview, ranked labels with a chart."""

from __future__ import annotations

import hashlib

import pandas as pd
import streamlit as st

from ui.client import GatewayError
from ui.common import cached, client, record_latency, show_error, task_info


def render(task: str = "pose") -> None:
    st.title("What is the person doing?")
    info = task_info(task)
    if info is None:
        return
    st.caption(f"{info['description']} — {len(info['labels'])} actions: {', '.join(info['labels'])}")
    source = st.radio("Photo from", ["Upload", "Camera"], horizontal=True, key="pose-source")
    if source == "Upload":
        photo = st.file_uploader("Photo", type=["jpg", "jpeg", "png", "webp", "bmp", "gif"], key="pose-upload")
    else:
        photo = st.camera_input("Take a photo", key="pose-camera")
    top_k = st.slider("How many labels to show", 1, len(info["labels"]), 5, key="pose-top-k")
    if photo is None:
        return
    data = photo.getvalue()
    left, right = st.columns([2, 3])
    left.image(data, caption=photo.name, width="stretch")
    digest = hashlib.sha256(data).hexdigest()
    try:
        result = cached(
            (info["route"], digest, top_k), lambda: client().classify_image(info["route"], data, photo.name, top_k)
        )
    except GatewayError as exc:
        show_error(exc)
        return
    record_latency(task, [result])
    with right:
        st.metric("Action", result["label"].replace("_", " "))
        st.progress(result["score"], text=f"score {result['score']:.2f}")
        ranked = pd.DataFrame({"probability": {r["label"]: r["score"] for r in result["top_k"]}})
        st.bar_chart(ranked, horizontal=True, sort=False, height=60 + 30 * len(ranked))
        st.caption(f"model {result['model']['name']} version {result['model']['version']}")
