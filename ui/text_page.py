"""A text classifier page: one text with examples, or a CSV classified in batches and downloadable."""

from __future__ import annotations

import io
from collections.abc import Callable

import pandas as pd
import streamlit as st

from ui.client import GatewayError
from ui.common import cached, client, record_latency, show_error, task_info

BATCH = 32  # texts per request: the gateway's default limit


def _score_chart(scores: dict[str, float]) -> None:
    st.bar_chart(pd.DataFrame({"probability": scores}), horizontal=True, sort=False, height=60 + 40 * len(scores))


def _single(task: str, route: str, examples: dict[str, str]) -> None:
    key = f"{task}-text"
    columns = st.columns(len(examples))
    for column, (name, text) in zip(columns, examples.items(), strict=True):
        if column.button(name, key=f"{task}-example-{name}", width="stretch"):
            st.session_state[key] = text
    text = st.text_area("Text", key=key, height=150, placeholder="Type or paste a text, or pick an example above")
    if st.button("Classify", type="primary", key=f"{task}-classify") or st.session_state.get(f"{task}-shown") == text:
        if not text.strip():
            st.info("Enter some text first.")
            return
        try:
            result = cached((route, text), lambda: client().classify_texts(route, [text])[0])
        except GatewayError as exc:
            show_error(exc)
            return
        st.session_state[f"{task}-shown"] = text
        record_latency(task, [result])
        st.metric("Label", result["label"])
        st.progress(result["score"], text=f"score {result['score']:.2f}")
        _score_chart(result["scores"])
        st.caption(f"model {result['model']['name']} version {result['model']['version']}")


def classify_frame(
    route: str, frame: pd.DataFrame, column: str, on_progress: Callable[[int, int], None]
) -> pd.DataFrame:
    """The frame plus `predicted_label` / `predicted_score`, classified in requests of BATCH texts.

    Empty cells stay unlabelled instead of failing the whole file.
    """
    texts = frame[column].fillna("").astype(str).tolist()
    labels: list[str | None] = []
    scores: list[float | None] = []
    for start in range(0, len(texts), BATCH):
        chunk = texts[start : start + BATCH]
        valid = [t for t in chunk if t.strip()]
        results = iter(cached((route, *valid), lambda v=valid: client().classify_texts(route, v)) if valid else [])
        for text in chunk:
            result = next(results) if text.strip() else None
            labels.append(result["label"] if result else None)
            scores.append(result["score"] if result else None)
        on_progress(start + len(chunk), len(texts))
    return frame.assign(predicted_label=labels, predicted_score=scores)


def _csv(task: str, route: str) -> None:
    upload = st.file_uploader("CSV file", type=["csv"], key=f"{task}-csv")
    if upload is None:
        return
    try:
        frame = pd.read_csv(upload)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        st.error(f"That file could not be read as CSV: {exc}")
        return
    text_columns = [c for c in frame.columns if pd.api.types.is_string_dtype(frame[c])] or list(frame.columns)
    column = st.selectbox("Column with the texts", text_columns, key=f"{task}-column")
    st.caption(f"{len(frame)} rows")
    if not st.button("Classify file", type="primary", key=f"{task}-classify-file"):
        return
    progress = st.progress(0.0, text="Classifying…")
    try:
        out = classify_frame(
            route,
            frame,
            column,
            lambda done, total: progress.progress(done / total, text=f"{done} / {total}"),
        )
    except GatewayError as exc:
        show_error(exc)
        return
    progress.empty()
    st.dataframe(out, width="stretch")
    buffer = io.StringIO()
    out.to_csv(buffer, index=False)
    st.download_button("Download CSV with predictions", buffer.getvalue(), f"{task}-predictions.csv", "text/csv")


def render(task: str, title: str, examples: dict[str, str]) -> None:
    st.title(title)
    info = task_info(task)
    if info is None:
        return
    st.caption(f"{info['description']} — labels: {', '.join(info['labels'])}")
    one, many = st.tabs(["One text", "CSV file"])
    with one:
        _single(task, info["route"], examples)
    with many:
        _csv(task, info["route"])
