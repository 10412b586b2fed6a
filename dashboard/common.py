"""What every page shares: the context (database, settings, filters), sidebar, helpers.

Each page starts with :func:`context`: it reads the database's filter options, draws the
global sidebar filters (site, sex, age range, scan date range, model; the same widget keys
on every page, their values kept in ``st.session_state`` across pages) and returns the
:class:`Context` the page queries through.
"""

from __future__ import annotations

import datetime as dt
import getpass
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import data
from dashboard.figures import label
from dashboard.settings import DashboardSettings
from engine.errors import VfriskError
from engine.store.dashboard_tables import CohortFilter

__all__ = [
    "SYNTHETIC_NOTE",
    "Context",
    "build_context",
    "context",
    "empty_state",
    "missing",
    "require",
    "show_figure",
    "show_table",
    "today",
    "who",
]

SYNTHETIC_NOTE = (
    "Results shown on the sample cohort come from SYNTHETIC data and weights trained on "
    "synthetic phantoms: they show that the software works, not how it performs on "
    "patients. Not for clinical use."
)
_FILTER_KEYS = ("f_model", "f_sites", "f_sex", "f_age", "f_dates")


@dataclass(frozen=True)
class Context:
    """One run's database, settings, table sizes, filter options and chosen filters."""

    db: Path
    settings: DashboardSettings
    counts: dict[str, int]
    options: dict[str, Any]
    filters: CohortFilter
    error: str | None = None

    def q(self, name: str, *args: Any) -> Any:
        """Cached ``dashboard_tables.<name>`` on this database."""
        return data.query(self.db, self.settings.lock_timeout_s, name, *args)

    def label(self, n: int, horizon: float | None = None) -> str:
        """Figure subtitle: the filtered sites, n, horizon, synthetic notice."""
        return label(self.filters.sites, n, horizon)


def context() -> Context:
    """Draw the sidebar filters and return this run's context (each page calls it first).

    The filter widgets live on every page under the same keys; re-assigning their values
    to ``st.session_state`` first keeps a choice when the user switches pages (Streamlit
    otherwise drops the state of a widget that the previous page does not render).
    """
    from dashboard.settings import from_environment, settings_from_config

    for key in _FILTER_KEYS:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]
    db, config, _ = from_environment()
    return build_context(db, settings_from_config(config))


def who() -> str:
    """The signed-in user's e-mail (OIDC), else the account running the server."""
    try:
        if st.user.is_logged_in:
            return str(st.user.get("email") or st.user.get("name") or "signed-in user")
    except (AttributeError, KeyError, st.errors.StreamlitAPIException):
        pass
    return f"local:{getpass.getuser()}"


def empty_state(what: str, command: str) -> None:
    """An info box saying what is missing and which command adds it."""
    st.info(f"{what} Run `{command}` to add it.", icon=":material/info:")


_MISSING = {
    "series": ("No scans are indexed yet.", "vfrisk index ARCHIVE --db DB"),
    "clinical": ("No clinical data yet.", "vfrisk import-clinical FILE --db DB"),
    "predictions": ("No scan has been scored yet.", "vfrisk score --db DB"),
    "biomarkers": ("No biomarkers measured yet.", "vfrisk score --db DB"),
    "evaluation": ("No evaluation has been stored yet.", "vfrisk report --db DB"),
}


def missing(ctx: Context, table: str) -> bool:
    """Show the empty state of ``table`` and return True when it has no rows."""
    if ctx.counts.get(table, -1) > 0:
        return False
    empty_state(*_MISSING[table])
    return True


def require(ctx: Context, *tables: str) -> None:
    """Stop the page with an error or empty state unless the database and tables are there."""
    if ctx.error is not None:
        st.error(ctx.error)
        st.stop()
    for t in tables:
        if missing(ctx, t):
            st.stop()


def show_figure(fig: Any, key: str) -> None:
    """A plotly figure whose modebar camera button downloads it as PNG."""
    st.plotly_chart(
        fig,
        key=key,
        config={
            "displaylogo": False,
            "toImageButtonOptions": {"format": "png", "filename": f"vfrisk_{key}", "scale": 2},
        },
    )


def show_table(df: pd.DataFrame, key: str) -> None:
    """A table; its toolbar (top right, on hover) downloads it as CSV."""
    st.dataframe(df, hide_index=True, key=key)


def _sidebar(options: dict[str, Any]) -> CohortFilter:
    sb = st.sidebar
    sb.header("Filters")
    models: pd.DataFrame = options["models"]
    model_id = None
    if len(models):
        names = {
            r.model_id: f"{r.name or r.model_id} ({r.model_id}, {int(r.n_predictions):,} scans)"
            for r in models.itertuples()
        }
        model_id = sb.selectbox("Model", list(names), format_func=names.__getitem__, key="f_model")
    else:
        sb.caption("No model has scored scans yet (`vfrisk score`).")
    sites = sb.multiselect("Site", options["sites"], key="f_sites", placeholder="all sites")
    sexes = sb.multiselect("Sex", options["sexes"], key="f_sex", placeholder="all")
    age = None
    if options["age"] is not None:
        lo, hi = int(options["age"][0]), int(options["age"][1]) + 1
        initial = {} if "f_age" in st.session_state else {"value": (lo, hi)}
        chosen = sb.slider("Age (years)", lo, hi, key="f_age", **initial)
        age = None if tuple(chosen) == (lo, hi) else (float(chosen[0]), float(chosen[1]))
    dates = None
    if options["scan_dates"] is not None:
        first, last = (pd.Timestamp(d).date() for d in options["scan_dates"])
        initial = {} if "f_dates" in st.session_state else {"value": (first, last)}
        chosen = sb.date_input(
            "Scan date", min_value=first, max_value=last, key="f_dates", **initial
        )
        if isinstance(chosen, tuple | list) and len(chosen) == 2 and tuple(chosen) != (first, last):
            dates = (chosen[0], chosen[1])
    sb.caption(SYNTHETIC_NOTE)
    return CohortFilter(
        model_id=model_id, sites=tuple(sites), sexes=tuple(sexes), age=age, scan_dates=dates
    )


def build_context(db: Path, settings: DashboardSettings) -> Context:
    """Read the database's options, draw the sidebar filters, return the context."""
    empty = {"sites": [], "sexes": [], "age": None, "scan_dates": None, "models": pd.DataFrame()}
    try:
        counts = data.query(db, settings.lock_timeout_s, "table_counts")
        options = data.query(db, settings.lock_timeout_s, "filter_options")
        error = None
    except VfriskError as exc:
        counts, options, error = {}, empty, f"[{exc.code}] {exc.message}"
    filters = _sidebar(options) if error is None else CohortFilter()
    return Context(
        db=db, settings=settings, counts=counts, options=options, filters=filters, error=error
    )


def today() -> dt.date:
    """Today's date (UTC), for file names."""
    return dt.datetime.now(dt.UTC).date()
