"""vfrisk dashboard: the Streamlit entry point (``vfrisk dashboard`` runs this file).

Asks for sign-in when required, then runs the page chosen in ``st.navigation``. Each page
draws the shared sidebar filters (``dashboard.common.context``), reads its widgets and
calls the query functions of
``engine.store.dashboard_tables`` (through ``dashboard.data``) and the figure functions
of ``dashboard.figures``.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard.settings import from_environment

PAGES = Path(__file__).with_name("pages")

st.set_page_config(page_title="vfrisk dashboard", page_icon=":material/monitoring:", layout="wide")
_, _, auth_required = from_environment()
if auth_required and not st.user.is_logged_in:
    st.title("vfrisk dashboard")
    st.write("Sign in to see the cohort.")
    st.button("Sign in", on_click=st.login)
    st.stop()

if auth_required:
    st.sidebar.button("Sign out", on_click=st.logout)
page = st.navigation(
    [
        st.Page(PAGES / "overview.py", title="Overview", icon=":material/dashboard:", default=True),
        st.Page(PAGES / "survival.py", title="Survival", icon=":material/timeline:"),
        st.Page(PAGES / "calibration.py", title="Calibration", icon=":material/tune:"),
        st.Page(PAGES / "comparison.py", title="Model vs FRAX", icon=":material/compare:"),
        st.Page(PAGES / "worklist.py", title="Worklist", icon=":material/checklist:"),
        st.Page(PAGES / "score_scan.py", title="Score a scan", icon=":material/upload_file:"),
        st.Page(PAGES / "data_quality.py", title="Data quality", icon=":material/rule:"),
    ]
)
page.run()
