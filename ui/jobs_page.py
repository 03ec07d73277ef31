"""Bulk jobs: a whole file classified on the server, followed here with a progress bar, results to download.

The job lives on the server (`POST /v1/jobs`), and its id in the page's address (`?job=<id>`), so a reload, a
closed tab or another browser picks it up where it is.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from contract.jobs import FINISHED, INPUT_COLUMN_DEFAULTS
from contract.status import TaskEntry
from contract.tables import TABLE_SUFFIXES, TableError, columns
from ui.client import GatewayError
from ui.common import client, show_error

FORMATS = [suffix[1:] for suffix in TABLE_SUFFIXES]


def _id_column(named: list[str]) -> int:
    """The option to preselect: a column called `id` or ending in `_id` names rows better than their numbers."""
    found = next((i for i, name in enumerate(named) if name.lower() == "id" or name.lower().endswith("_id")), None)
    return 0 if found is None else found + 1


def _submit(models: list[TaskEntry]) -> None:
    tasks = [m.task for m in models]
    task = st.selectbox("Task", tasks, key="job-task")
    upload = st.file_uploader("File: CSV, TSV or JSON Lines, one row per input", type=FORMATS, key="job-file")
    if upload is None:
        return
    data = upload.getvalue()
    try:
        named = columns(data, upload.name)
    except TableError as exc:
        st.error(str(exc))
        return
    if not named:
        st.error("That file names no columns: a CSV or TSV needs a header row, JSON Lines an object per line.")
        return
    kind = next(m.kind for m in models if m.task == task)
    preferred = INPUT_COLUMN_DEFAULTS[kind]
    column = st.selectbox("Column with the inputs", named, index=named.index(preferred) if preferred in named else 0)
    id_column = st.selectbox(
        "Column naming each row (optional)", ["(row number)", *named], index=_id_column(named), key="job-id-column"
    )
    if st.button("Start the job", type="primary", key="job-start"):
        try:
            view = client().submit_job(
                task, upload.name, data, column, None if id_column.startswith("(") else id_column
            )
        except GatewayError as exc:
            show_error(exc)
            return
        st.query_params["job"] = view["id"]
        st.rerun()


RESULT_FORMATS = (("CSV", True, "csv", "text/csv"), ("JSON Lines", False, "jsonl", "application/x-ndjson"))


def _header(view: dict[str, Any]) -> None:
    rows, model = view["rows"], view["model"]
    st.subheader(f"Job {view['id']}: {view['state']}")
    st.caption(
        f"task {view['task']} · {view['input']} · model {model['name']} version {model['version'] or '(as served)'}"
    )
    done = rows["done"] / rows["total"] if rows["total"] else 0.0
    eta = f", about {view['eta_s']:.0f} s left" if view.get("eta_s") else ""
    rate = f" at {view['rows_per_s']:.0f} rows/s" if view.get("rows_per_s") else ""
    st.progress(done, text=f"{rows['done']} of {rows['total']} rows{rate}{eta}")
    if rows["refused"]:
        reasons = ", ".join(f"{count} {code}" for code, count in view["refused"].items())
        st.caption(f"{rows['refused']} rows answered with their own error ({reasons}): see their lines in the results")


@st.fragment(run_every=2)
def _running(job_id: str) -> None:
    """A job not finished yet, its progress refreshed every two seconds; the whole page again once it is."""
    try:
        view = client().job(job_id)
    except GatewayError as exc:
        show_error(exc)
        return
    if view["state"] in FINISHED:
        st.rerun()
    _header(view)
    if st.button("Cancel the job", key="job-cancel"):
        client().cancel_job(job_id)


def _finished(view: dict[str, Any]) -> None:
    _header(view)
    if view["state"] == "failed":
        st.error(f"The job failed: {view.get('reason')}")
    if st.button("Delete the job and its results", key="job-delete"):
        try:
            client().delete_job(view["id"])
        except GatewayError as exc:
            show_error(exc)
            return
        del st.query_params["job"]
        st.session_state["job-deleted"] = view["id"]
        st.rerun()
    if view["state"] != "succeeded":
        return
    name = f"{view['task']}-{view['id']}"
    for label, as_csv, suffix, mime in RESULT_FORMATS:
        key = f"job-results-{view['id']}-{suffix}"
        if key not in st.session_state:
            st.session_state[key] = client().job_results(view["id"], as_csv=as_csv)
        st.download_button(
            f"Download results ({label})", st.session_state[key], f"{name}.{suffix}", mime, key=key + "-button"
        )


def render(models: list[TaskEntry]) -> None:
    st.title("Bulk jobs")
    st.caption(
        "A whole file classified on the server, in the background: the job goes on if this page closes, and its "
        "address brings you back to it."
    )
    job_id = st.query_params.get("job")
    if job_id:
        try:
            view = client().job(job_id)
        except GatewayError as exc:
            show_error(exc)
        else:
            if view["state"] in FINISHED:
                _finished(view)
            else:
                _running(job_id)
        if st.button("Start another job", key="job-new"):
            del st.query_params["job"]
            st.rerun()
        return
    deleted = st.session_state.pop("job-deleted", None)
    if deleted:
        st.success(f"Job {deleted} deleted, its input and results with it.")
    _submit(models)
    try:
        recent = client().jobs()
    except GatewayError:
        return
    if recent:
        st.subheader("Recent jobs")
        for view in recent[:10]:
            rows = view["rows"]
            st.markdown(
                f"[{view['id']}](?job={view['id']}) · {view['task']} · {view['state']} · "
                f"{rows['done']}/{rows['total']} rows"
            )
