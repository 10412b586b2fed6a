"""The study's evaluation table, per site, pooled and by subgroup, from ``engine.evaluation``.

Pure: an analysis frame (``engine.report.cohort``) in, a long table out, one row per
(score, site, subgroup, horizon, metric), the layout of the ``evaluation`` table
(``engine/store/schema.py``). Every number is a direct call of an ``engine.evaluation``
function on the rows of that group:

* cohort counts (score 'cohort'): patients, incident VF, deaths, prevalent VF, missing
  values, median follow-up by reverse Kaplan-Meier (censoring as the event; Schemper &
  Smith, Control Clin Trials 1996;17:343-346);
* model: detection AUROC of ``p_fracture`` for ``prevalent_vf`` (DeLong interval), Harrell
  and Uno c-index of the last-horizon risk (Uno truncated there), td-AUC, Brier score and
  calibration (slope, intercept, ICI, E50, E90) at each horizon, integrated Brier score;
* comparators: FRAX MOF and hip (10-year probability; ranks only), L1 trabecular HU
  (lower HU = higher risk, so the score is ``-HU``; Pickhardt 2013): c-indices, td-AUC;
  L1 HU also its detection AUROC;
* paired comparisons, model minus comparator on patients with both scores:
  ``delta_harrell_c_vs_<c>``, ``delta_uno_c_vs_<c>`` (``compare_concordance``) and
  ``delta_detection_auc_vs_l1_hu`` (DeLong, ``compare_auroc``).

Subgroups (sex, age band) get counts, c-indices, td-AUC, detection AUROC and the
comparison with FRAX MOF; calibration is for whole sites and the pooled cohort. A group
with fewer events or non-events than ``min_cell_count`` gets counts only; a metric that
cannot be estimated (say, no fracture by 2 years) is left out and listed in ``notes``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from engine import evaluation as ev
from engine.errors import VfriskError
from engine.report.settings import ReportSettings
from engine.store.report_tables import EVALUATION_COLUMNS

__all__ = [
    "COMPARATORS",
    "COUNT_METRICS",
    "EvaluationTable",
    "age_band_labels",
    "comparator_score",
    "evaluate",
    "reverse_km_median",
]

#: Comparator scores: name -> (column, sign). Higher score = higher risk after the sign.
COMPARATORS: dict[str, tuple[str, float]] = {
    "frax_mof": ("frax_mof", 1.0),
    "frax_hip": ("frax_hip", 1.0),
    "l1_hu": ("l1_hu", -1.0),
}
#: Metrics whose estimate is a count of patients (suppressed below min_cell_count).
COUNT_METRICS = frozenset(
    {
        "patients",
        "events",
        "deaths",
        "prevalent_vf",
        "missing_frax_mof",
        "missing_frax_hip",
        "missing_l1_hu",
        "missing_prevalent_vf",
        "missing_sex",
        "missing_age",
    }
)


@dataclass(frozen=True)
class EvaluationTable:
    """The long evaluation table (columns ``EVALUATION_COLUMNS``) and what was skipped."""

    rows: pd.DataFrame
    notes: tuple[str, ...]


def comparator_score(frame: pd.DataFrame, name: str) -> np.ndarray:
    """Comparator ``name`` as a risk score (higher = higher risk), NaN where missing."""
    column, sign = COMPARATORS[name]
    return sign * frame[column].to_numpy(dtype=float)


def age_band_labels(age: pd.Series, edges: tuple[int, ...]) -> pd.Series:
    """Age band of each patient ("50-59", ..., "80+", "<50"); None where age is missing."""
    a = age.to_numpy(dtype=float)
    labels = [f"<{edges[0]}"] + [
        f"{lo}-{hi - 1}" if hi is not None else f"{lo}+"
        for lo, hi in zip(edges, [*edges[1:], None], strict=True)
    ]
    idx = np.searchsorted(np.asarray(edges, dtype=float), a, side="right")
    out = np.array([labels[i] for i in np.clip(idx, 0, len(labels) - 1)], dtype=object)
    out[~np.isfinite(a)] = None
    return pd.Series(out, index=age.index)


def reverse_km_median(time: np.ndarray, event: np.ndarray) -> float:
    """Median follow-up (years) by reverse Kaplan-Meier: censoring (code 0) is the event.

    NaN when nobody is censored or the curve stays above 1/2.
    """
    censored = (np.asarray(event) == 0).astype(int)
    if not censored.any():
        return float("nan")
    km = ev.kaplan_meier(ev.SurvivalTarget.from_arrays(time, censored))
    below = np.flatnonzero(km.survival <= 0.5)
    return float(km.times[below[0]]) if below.size else float("nan")


class _Rows:
    """Collects rows of one group (site, subgroup) and notes of what was skipped."""

    def __init__(self, site: str, subgroup: str) -> None:
        self.site, self.subgroup = site, subgroup
        self.rows: list[tuple] = []
        self.notes: list[str] = []

    def add(
        self,
        score: str,
        metric: str,
        estimate: float,
        *,
        horizon: float | None = None,
        ci: tuple[float, float] = (np.nan, np.nan),
        p: float = np.nan,
        n: int | None = None,
        events: int | None = None,
        method: str = "",
    ) -> None:
        self.rows.append(
            (
                score,
                self.site,
                self.subgroup,
                None if horizon is None else float(horizon),
                metric,
                float(estimate),
                float(ci[0]),
                float(ci[1]),
                float(p),
                n,
                events,
                method,
            )
        )

    def attempt(self, what: str, fn, *args, **kwargs):  # noqa: ANN001, ANN202 - any metric
        try:
            return fn(*args, **kwargs)
        except (VfriskError, np.linalg.LinAlgError, ValueError) as exc:
            message = exc.message if isinstance(exc, VfriskError) else str(exc)
            self.notes.append(f"{self.site}/{self.subgroup}: {what} not estimable ({message})")
            return None


def _groups(
    frame: pd.DataFrame, settings: ReportSettings
) -> Iterator[tuple[str, str, pd.DataFrame]]:
    bands = age_band_labels(frame["age"], settings.age_bands)
    for site in ["all", *sorted(frame["site"].dropna().unique())]:
        in_site = frame if site == "all" else frame[frame["site"] == site]
        yield site, "all", in_site
        if not settings.subgroups:
            continue
        for sex in sorted(in_site["sex"].dropna().unique()):
            yield site, f"sex={sex}", in_site[in_site["sex"] == sex]
        site_bands = bands.loc[in_site.index]
        for label in sorted(site_bands.dropna().unique(), key=_band_order):
            yield site, f"age={label}", in_site[site_bands == label]


def _band_order(label: str) -> float:
    return -1.0 if label.startswith("<") else float(label.split("-")[0].rstrip("+"))


def _cohort_rows(out: _Rows, g: pd.DataFrame, has_model: bool, has_hu: bool) -> None:
    n = len(g)
    events = int((g["event_type"] == 1).sum())
    out.add("cohort", "patients", n, n=n, events=events, method="count")
    out.add("cohort", "events", events, n=n, events=events, method="count")
    out.add(
        "cohort", "deaths", int((g["event_type"] == 2).sum()), n=n, events=events, method="count"
    )
    out.add(
        "cohort",
        "prevalent_vf",
        int((g["prevalent_vf"] == 1).sum()),
        n=n,
        events=events,
        method="count",
    )
    missing = ["frax_mof", "frax_hip", "prevalent_vf", "sex", "age"] + (["l1_hu"] if has_hu else [])
    for col in missing:
        out.add(
            "cohort", f"missing_{col}", int(g[col].isna().sum()), n=n, events=events, method="count"
        )
    if n:
        med = reverse_km_median(g["followup_years"].to_numpy(float), g["event_type"].to_numpy())
        out.add("cohort", "median_followup", med, n=n, events=events, method="reverse_km")


def _enough(target: ev.SurvivalTarget | None, k: int) -> bool:
    return target is not None and target.n_events >= k and target.n - target.n_events >= k


def _target(g: pd.DataFrame) -> ev.SurvivalTarget | None:
    if g.empty or not (g["event_type"] == 1).any():
        return None
    return ev.SurvivalTarget.from_arrays(g["followup_years"].to_numpy(float), g["event_type"])


def _concordance_rows(out: _Rows, score: str, target, s: np.ndarray, st: ReportSettings) -> None:  # noqa: ANN001
    kw = st.ci_kwargs()
    for metric, fn, extra in (
        ("harrell_c", ev.harrell_c, {}),
        ("uno_c", ev.uno_c, {"tau": float(st.c_horizon)}),
    ):
        r = out.attempt(f"{score} {metric}", fn, target, s, **extra, **kw)
        if r is not None:
            out.add(
                score,
                metric,
                r.estimate,
                horizon=extra.get("tau"),
                ci=(r.ci_low, r.ci_high),
                n=r.n,
                events=r.events,
                method=r.method,
            )


def _td_auc_rows(out: _Rows, score: str, target, risk: np.ndarray, st: ReportSettings) -> None:  # noqa: ANN001
    r = out.attempt(
        f"{score} td_auc",
        ev.cumulative_dynamic_auc,
        target,
        risk,
        np.asarray(st.horizons, float),
        **st.ci_kwargs(),
    )
    if r is None:
        return
    for j, h in enumerate(r.times):
        if np.isfinite(r.estimate[j]):
            out.add(
                score,
                "td_auc",
                r.estimate[j],
                horizon=h,
                ci=(r.ci_low[j], r.ci_high[j]),
                n=int(r.cases[j] + r.controls[j]),
                events=int(r.cases[j]),
                method=r.method,
            )
        else:
            out.notes.append(
                f"{out.site}/{out.subgroup}: {score} td_auc at {h:g} y has no cases or no controls"
            )


def _detection_rows(out: _Rows, score: str, y: np.ndarray, s: np.ndarray, k: int) -> None:
    ok = np.isfinite(y) & np.isfinite(s)
    if min(int((y[ok] == 1).sum()), int((y[ok] == 0).sum())) < k:
        out.notes.append(
            f"{out.site}/{out.subgroup}: {score} detection AUROC needs >= {k} "
            "patients with and without prevalent VF"
        )
        return
    r = out.attempt(f"{score} detection_auc", ev.auroc, y[ok].astype(int), s[ok])
    if r is not None:
        out.add(
            score,
            "detection_auc",
            r.estimate,
            ci=(r.ci_low, r.ci_high),
            n=r.n,
            events=r.events,
            method="delong",
        )


def _calibration_rows(out: _Rows, target, g: pd.DataFrame, st: ReportSettings) -> None:  # noqa: ANN001
    risks = np.column_stack([g[f"risk_{h}y"].to_numpy(float) for h in st.horizons])
    b = out.attempt(
        "model brier", ev.brier_score, target, risks, np.asarray(st.horizons, float), alpha=st.alpha
    )
    if b is not None:
        for j, h in enumerate(b.times):
            out.add(
                "model",
                "brier",
                b.estimate[j],
                horizon=h,
                ci=(b.ci_low[j], b.ci_high[j]),
                n=b.n,
                events=b.events,
                method="ipcw",
            )
        if np.isfinite(b.integrated):
            out.add(
                "model",
                "ibs",
                b.integrated,
                horizon=float(b.times[-1]),
                n=b.n,
                events=b.events,
                method="ipcw_trapezoid",
            )
    for j, h in enumerate(st.horizons):
        c = out.attempt(
            f"model calibration at {h} y",
            ev.calibration,
            target,
            risks[:, j],
            float(h),
            alpha=st.alpha,
        )
        if c is None:
            continue
        common = {"horizon": h, "n": c.n, "events": c.events}
        out.add(
            "model",
            "cal_slope",
            c.slope,
            ci=(c.slope_ci_low, c.slope_ci_high),
            method="ipcw_cloglog",
            **common,
        )
        out.add(
            "model",
            "cal_intercept",
            c.intercept,
            ci=(c.intercept_ci_low, c.intercept_ci_high),
            method="ipcw_cloglog",
            **common,
        )
        for name, value in (("ici", c.ici), ("e50", c.e50), ("e90", c.e90)):
            out.add("model", name, value, method="ipcw_rcs", **common)


def _paired_rows(
    out: _Rows,
    comp: str,
    target,
    a: np.ndarray,
    b: np.ndarray,
    st: ReportSettings,
    kinds: tuple[str, ...],
) -> None:  # noqa: ANN001
    for kind in kinds:
        tau = float(st.c_horizon) if kind == "uno" else None
        r = out.attempt(
            f"model vs {comp} ({kind})",
            ev.compare_concordance,
            target,
            a,
            b,
            kind=kind,
            tau=tau,
            **st.ci_kwargs(),
        )
        if r is not None:
            out.add(
                "model",
                f"delta_{kind}_c_vs_{comp}",
                r.difference,
                horizon=tau,
                ci=(r.ci_low, r.ci_high),
                p=r.p_value,
                n=r.n,
                events=r.events,
                method=r.method,
            )


def _group_rows(
    out: _Rows, g: pd.DataFrame, st: ReportSettings, has_model: bool, has_hu: bool
) -> None:
    _cohort_rows(out, g, has_model, has_hu)
    k, full = st.min_cell_count, out.subgroup == "all"
    comps = ["frax_mof", "frax_hip"] + (["l1_hu"] if has_hu else [])
    y = g["prevalent_vf"].to_numpy(float)
    if has_model:
        _detection_rows(out, "model", y, g["p_fracture"].to_numpy(float), k)
    if has_hu:
        _detection_rows(out, "l1_hu", y, comparator_score(g, "l1_hu"), k)
        if has_model:
            _paired_detection(
                out, y, g["p_fracture"].to_numpy(float), comparator_score(g, "l1_hu"), k
            )
    target = _target(g)
    if not _enough(target, k):
        out.notes.append(
            f"{out.site}/{out.subgroup}: fewer than {k} incident fractures or "
            "non-fractures; survival metrics not computed"
        )
        return
    if has_model:
        risk_c = g[f"risk_{st.c_horizon}y"].to_numpy(float)
        _concordance_rows(out, "model", target, risk_c, st)
        risks = np.column_stack([g[f"risk_{h}y"].to_numpy(float) for h in st.horizons])
        _td_auc_rows(out, "model", target, risks, st)
        if full:
            _calibration_rows(out, target, g, st)
    for comp in comps:
        s = comparator_score(g, comp)
        ok = np.isfinite(s)
        sub = target.subset(ok)
        if not _enough(sub, k):
            out.notes.append(f"{out.site}/{out.subgroup}: {comp} available for too few patients")
            continue
        _concordance_rows(out, comp, sub, s[ok], st)
        _td_auc_rows(out, comp, sub, s[ok], st)
        if has_model and (full or comp == "frax_mof"):
            kinds = ("harrell", "uno") if full else ("harrell",)
            _paired_rows(out, comp, sub, risk_c[ok], s[ok], st, kinds)


def _paired_detection(out: _Rows, y: np.ndarray, a: np.ndarray, b: np.ndarray, k: int) -> None:
    ok = np.isfinite(y) & np.isfinite(a) & np.isfinite(b)
    if min(int((y[ok] == 1).sum()), int((y[ok] == 0).sum())) < k:
        return
    r = out.attempt("model vs l1_hu detection", ev.compare_auroc, y[ok].astype(int), a[ok], b[ok])
    if r is not None:
        out.add(
            "model",
            "delta_detection_auc_vs_l1_hu",
            r.difference,
            ci=(r.ci_low, r.ci_high),
            p=r.p_value,
            n=r.n,
            events=r.events,
            method=r.method,
        )


def evaluate(
    frame: pd.DataFrame, settings: ReportSettings, *, has_model: bool, has_l1_hu: bool
) -> EvaluationTable:
    """The long evaluation table of an analysis frame, pooled ('all'), per site, by subgroup.

    Parameters
    ----------
    frame : pandas.DataFrame
        ``AnalysisCohort.frame``: one row per patient (years, 0/1/2 events, probabilities).
    settings : ReportSettings
        Horizons, subgroups, minimum cell count and interval settings.
    has_model : bool
        Evaluate the model columns (``p_fracture``, ``risk_<h>y``).
    has_l1_hu : bool
        Evaluate L1 trabecular HU as a baseline.

    Returns
    -------
    EvaluationTable
        Rows in the column order of ``EVALUATION_COLUMNS``; ``horizon`` None where the
        metric has none; ``n``/``events`` the patients and fractures behind each number
        (for td-AUC: cases + controls and cases at the horizon).
    """
    rows: list[tuple] = []
    notes: list[str] = []
    for site, subgroup, g in _groups(frame, settings):
        out = _Rows(site, subgroup)
        _group_rows(out, g, settings, has_model, has_l1_hu)
        rows += out.rows
        notes += out.notes
    table = pd.DataFrame(rows, columns=list(EVALUATION_COLUMNS))
    table["horizon"] = table["horizon"].astype("float64")
    table["n"] = table["n"].astype("Int64")
    table["events"] = table["events"].astype("Int64")
    return EvaluationTable(rows=table, notes=tuple(notes))
