"""Streamlit entry point: `streamlit run ui/app.py`. One page per task plus a status page."""

from pathlib import Path

import streamlit as st

VIEWS = Path(__file__).parent / "views"

st.set_page_config(page_title="Multi-task classifier", page_icon=":material/search:", layout="wide")
pages = [
    st.Page(VIEWS / "sentiment.py", title="Movie reviews", icon=":material/movie:", default=True),
    st.Page(VIEWS / "disaster.py", title="Disaster tweets", icon=":material/warning:"),
    st.Page(VIEWS / "pose.py", title="Human actions", icon=":material/directions_run:"),
    st.Page(VIEWS / "status.py", title="Status", icon=":material/monitor_heart:"),
]
st.navigation(pages).run()
