"""Streamlit entry point: `streamlit run ui/app.py`.

The pages come from the gateway's `/v1/models`, asked again on every script run: one per catalog task, drawn
by the page of its input kind (text or image), then the status page. The first task's page is the home page.
A task added to the catalog appears here with no change to the UI.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from urllib.parse import urlsplit

import streamlit as st

from contract.status import TaskEntry
from ui import image_page, jobs_page, status_page, text_page
from ui.client import GatewayError
from ui.common import client

Render = Callable[[TaskEntry], None]
KINDS: dict[str, tuple[Render, str]] = {
    "text": (text_page.render, ":material/article:"),
    "image": (image_page.render, ":material/photo_camera:"),
}


def _no_form(info: TaskEntry) -> None:
    st.title(info.description)
    st.info(f"This UI has no form for '{info.kind}' inputs yet. The API serves the task at POST {info.route}.")


def task_page(info: TaskEntry) -> st.Page:
    """The page of one `/v1/models` entry, at `/<task>`."""
    render, icon = KINDS.get(info.kind, (_no_form, ":material/help:"))
    title = info.task.replace("_", " ").capitalize()
    return st.Page(partial(render, info), title=title, icon=icon, url_path=info.task)


def pages(models: list[TaskEntry]) -> list[st.Page]:
    bulk = st.Page(partial(jobs_page.render, models), title="Bulk jobs", icon=":material/dataset:", url_path="jobs")
    status = st.Page(
        partial(status_page.render, models), title="Status", icon=":material/monitor_heart:", url_path="status"
    )
    return [*map(task_page, models), bulk, status]


def unavailable(exc: GatewayError) -> None:
    """No model list, so no pages: say why, and offer a retry (any rerun asks the gateway again)."""
    st.title("Multi-task classifier")
    st.error(
        f"The classification service is unavailable, so there are no pages to show. {exc}",
        icon=":material/error:",
    )
    st.button("Retry", type="primary", icon=":material/refresh:")


def _asked_path() -> str:
    """The page part of the browser's address (`birds` for `http://host/<base path>/birds`), "" if none."""
    path = urlsplit(st.context.url or "").path.strip("/")
    base = str(st.get_option("server.baseUrlPath") or "").strip("/")
    return path.removeprefix(base).strip("/")


def unavailable_pages(exc: GatewayError) -> list[st.Page]:
    """While there is no model list: the error, also at the address the browser asked for, so that the retry
    which finds the gateway again opens the page that was asked for."""
    show = partial(unavailable, exc)
    home = st.Page(show, title="Unavailable", url_path="unavailable", default=True)
    asked = _asked_path()
    if asked in ("", "unavailable") or "/" in asked:  # the home page, or no page this app could have
        return [home]
    return [home, st.Page(show, title="Unavailable", url_path=asked)]


st.set_page_config(page_title="Multi-task classifier", page_icon=":material/search:", layout="wide")
try:
    models = client().models()
except GatewayError as exc:
    st.navigation(unavailable_pages(exc), position="hidden").run()
else:
    st.navigation(pages(models)).run()
