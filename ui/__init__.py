"""Streamlit front end: talks only to the gateway over HTTP."""
