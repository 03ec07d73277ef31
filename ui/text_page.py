"""The page of any text task: one text (optionally explained word by word), or a CSV classified in batches and
downloadable.

Everything task-specific (title, labels, length limit, route) comes from the task's `/v1/models` entry.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import partial

import pandas as pd
import streamlit as st

from contract.status import TaskEntry
from contract.wire import explain_path
from ui.client import GatewayError
from ui.common import cached, client, model_caption, readiness_banner, record_latency, show_error
from ui.explanations import show_words

BATCH = 32  # texts per request: the gateway's default limit


def _score_chart(scores: dict[str, float]) -> None:
    st.bar_chart(pd.DataFrame({"probability": scores}), horizontal=True, sort=False, height=60 + 40 * len(scores))


def _single(task: str, route: str, max_chars: int) -> None:
    key = f"{task}-text"
    text = st.text_area("Text", key=key, height=150, max_chars=max_chars, placeholder="Type or paste a text")
    explain = st.toggle(
        "Explain",
        key=f"{task}-explain",
        help="Also show which words carried the answer. Takes longer: the text is classified again without each word.",
    )
    if st.button("Classify", type="primary", key=f"{task}-classify") or st.session_state.get(f"{task}-shown") == text:
        if not text.strip():
            st.info("Enter some text first.")
            return
        path, ask = (explain_path(route), client().explain_texts) if explain else (route, client().classify_texts)
        try:
            result = cached((path, text), lambda: ask(route, [text])[0])
        except GatewayError as exc:
            show_error(exc)
            return
        st.session_state[f"{task}-shown"] = text
        record_latency(task, [result], explained=explain)
        st.metric("Label", result["label"])
        st.progress(result["score"], text=f"score {result['score']:.2f}")
        if explain:
            show_words(text, result["explanation"])
        _score_chart(result["scores"])
        st.caption(model_caption(result["model"]))


def classify_frame(
    route: str, frame: pd.DataFrame, column: str, max_chars: int, on_progress: Callable[[int, int], object]
) -> pd.DataFrame:
    """The frame plus `predicted_label` / `predicted_score`, classified in requests of BATCH texts.

    Empty cells and texts longer than the task's `max_chars` stay unlabelled instead of failing the whole file.
    """
    texts = frame[column].fillna("").astype(str).tolist()
    labels: list[str | None] = []
    scores: list[float | None] = []
    for start in range(0, len(texts), BATCH):
        chunk = texts[start : start + BATCH]
        usable = [bool(t.strip()) and len(t) <= max_chars for t in chunk]
        valid = [t for t, ok in zip(chunk, usable, strict=True) if ok]
        results = iter(cached((route, *valid), partial(client().classify_texts, route, valid)) if valid else [])
        for ok in usable:
            result = next(results) if ok else None
            labels.append(result["label"] if result else None)
            scores.append(result["score"] if result else None)
        on_progress(start + len(chunk), len(texts))
    return frame.assign(predicted_label=labels, predicted_score=scores)


def _csv(task: str, route: str, max_chars: int) -> None:
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
            max_chars,
            lambda done, total: progress.progress(done / total, text=f"{done} / {total}"),
        )
    except GatewayError as exc:
        show_error(exc)
        return
    progress.empty()
    if skipped := int(out["predicted_label"].isna().sum()):
        st.caption(f"{skipped} rows left unlabelled: empty, or longer than {max_chars} characters")
    st.dataframe(out, width="stretch")
    buffer = io.StringIO()
    out.to_csv(buffer, index=False)
    st.download_button("Download CSV with predictions", buffer.getvalue(), f"{task}-predictions.csv", "text/csv")


def render(info: TaskEntry) -> None:
    """The page for one `kind: text` entry of `/v1/models`."""
    task, route, max_chars = info.task, info.route, info.max_chars
    assert max_chars is not None  # the gateway names the limit of every text task
    st.title(info.description)
    st.caption(f"Labels: {', '.join(info.labels)} · at most {max_chars} characters per text")
    readiness_banner(info)
    one, many = st.tabs(["One text", "CSV file"])
    with one:
        _single(task, route, max_chars)
    with many:
        _csv(task, route, max_chars)
