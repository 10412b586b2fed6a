"""The study's comparison table from scores already computed: pure, no database, no torch.

Every number is one call of an ``engine.evaluation`` function on the patients of one site
(and on the external sites pooled):

* ``detection_auc``: AUROC of the detection score for ``prevalent_vf`` (any Genant grade,
  the only label of the clinical table), DeLong interval; ``detection_auc_grade2`` when
  the grade is known (generator truth): grade >= 2 against every other patient;
* ``harrell_c``: Harrell's c-index of the risk at the last horizon (deaths censored);
* ``td_auc``: cumulative/dynamic AUROC at each horizon (IPCW);
* paired with the reference model (the study's multitask bone+muscle network) on the
  patients both scores cover: ``delta_detection_auc_vs_<ref>`` (DeLong,
  ``compare_auroc``) and ``delta_harrell_c_vs_<ref>`` (``compare_concordance``: paired
  bootstrap up to ``[report] bootstrap_max_n`` patients, influence function above);
  estimate = this score minus the reference, p two-sided. The td-AUC has no paired test
  in ``engine.evaluation``, so none is given.

Rows follow the ``evaluation`` table (``engine/store/schema.py``): one per (score, site,
subgroup 'all', horizon, metric).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from engine import evaluation as ev
from engine.errors import VfriskError
from engine.report.settings import ReportSettings
from engine.store.report_tables import EVALUATION_COLUMNS

__all__ = [
    "BASELINES",
    "ComparisonTable",
    "ScoredModel",
    "evaluate_models",
    "site_groups",
    "to_markdown",
    "verdict",
]

#: Comparators the deep model has to beat to justify itself (issue 6): the simple
#: opportunistic baselines and FRAX.
BASELINES = (
    "frax_mof", "frax_hip", "cox_clinical", "l1_hu_le110", "l1_hu_le160", "l1_hu",
    "cox_biomarkers",
)  # fmt: skip
EXTERNAL = "external"


@dataclass(frozen=True)
class ScoredModel:
    """One model's or comparator's scores for every patient of the frame.

    Attributes
    ----------
    name, label : str
        Key (``evaluation.score``) and human name.
    kind : str
        ``'variant'`` (a trained network), ``'comparator'`` or ``'oracle'`` (generator truth).
    detection : numpy.ndarray or None, shape (n,)
        Higher = more likely a prevalent fracture; None = no detection output.
    survival : numpy.ndarray or None, shape (n,) or (n, T)
        Risk ranking: one score for every horizon, or P(fracture by year t) in column
        ``t - 1``; None = no survival output. NaN = no value for that patient.
    """

    name: str
    label: str
    kind: str
    detection: np.ndarray | None
    survival: np.ndarray | None

    def at(self, horizon: int) -> np.ndarray:
        """The survival score ranking patients at ``horizon`` years, shape (n,)."""
        s = self.survival
        return s if s.ndim == 1 else s[:, int(horizon) - 1]


@dataclass(frozen=True)
class ComparisonTable:
    """Long rows (``EVALUATION_COLUMNS``) and what could not be estimated."""

    rows: pd.DataFrame
    notes: tuple[str, ...]


def site_groups(sites: Sequence[str], dev_sites: Sequence[str]) -> list[tuple[str, np.ndarray]]:
    """``(group, mask)``: the development site(s) first, then each other site, then
    ``'external'`` (all non-development sites pooled) when there are two or more."""
    s = np.asarray(sites, dtype=object)
    names = sorted(set(s.tolist()), key=lambda x: (x not in dev_sites, x))
    groups = [(n, s == n) for n in names]
    external = [n for n in names if n not in dev_sites]
    if len(external) >= 2:
        groups.append((EXTERNAL, ~np.isin(s, list(dev_sites))))
    return groups


class _Rows:
    def __init__(self, site: str) -> None:
        self.site = site
        self.rows: list[tuple] = []
        self.notes: list[str] = []

    def add(self, score: str, metric: str, r: object, *, horizon: float | None = None,
            p: float = np.nan, estimate: float | None = None) -> None:  # fmt: skip
        est = getattr(r, "estimate", None) if estimate is None else estimate
        self.rows.append((
            score, self.site, "all", horizon, metric, float(est), float(r.ci_low),
            float(r.ci_high), float(p), int(r.n), int(r.events), str(r.method),
        ))  # fmt: skip

    def attempt(self, what: str, fn, *args, **kwargs):  # noqa: ANN001, ANN202 - any metric
        try:
            return fn(*args, **kwargs)
        except (VfriskError, np.linalg.LinAlgError, ValueError) as exc:
            message = exc.message if isinstance(exc, VfriskError) else str(exc)
            self.notes.append(f"{self.site}: {what} not estimable ({message})")
            return None


def _both(k: int, y: np.ndarray) -> bool:
    return int((y == 1).sum()) >= k and int((y == 0).sum()) >= k


def _detection(out: _Rows, m: ScoredModel, ref: ScoredModel | None, metric: str,
               y: np.ndarray, k: int) -> None:  # fmt: skip
    s = m.detection
    ok = np.isfinite(y) & np.isfinite(s)
    if not _both(k, y[ok]):
        out.notes.append(f"{out.site}: {m.name} {metric} needs >= {k} patients with and without")
        return
    r = out.attempt(f"{m.name} {metric}", ev.auroc, y[ok].astype(int), s[ok])
    if r is None:
        return
    out.rows.append((m.name, out.site, "all", None, metric, r.estimate, r.ci_low, r.ci_high,
                     np.nan, r.n, r.events, "delong"))  # fmt: skip
    if ref is None or ref.detection is None or ref.name == m.name:
        return
    both = ok & np.isfinite(ref.detection)
    if not _both(k, y[both]):
        return
    c = out.attempt(
        f"{m.name} vs {ref.name} {metric}", ev.compare_auroc, y[both].astype(int), s[both],
        ref.detection[both],
    )  # fmt: skip
    if c is not None:
        out.rows.append((m.name, out.site, "all", None, f"delta_{metric}_vs_{ref.name}",
                         c.difference, c.ci_low, c.ci_high, c.p_value, c.n, c.events,
                         c.method))  # fmt: skip


def _survival(out: _Rows, m: ScoredModel, ref: ScoredModel | None, target: ev.SurvivalTarget,
              st: ReportSettings) -> None:  # fmt: skip
    k, h = st.min_cell_count, st.c_horizon
    s = m.at(h)
    ok = np.isfinite(s)
    sub = target.subset(ok)
    if sub.n_events < k or sub.n - sub.n_events < k:
        out.notes.append(f"{out.site}: {m.name} has fewer than {k} fractures or non-fractures")
        return
    kw = st.ci_kwargs()
    r = out.attempt(f"{m.name} harrell_c", ev.harrell_c, sub, s[ok], **kw)
    if r is not None:
        out.add(m.name, "harrell_c", r)
    horizons = np.asarray(st.horizons, float)
    risk = np.column_stack([m.at(t)[ok] for t in st.horizons])
    t = out.attempt(f"{m.name} td_auc", ev.cumulative_dynamic_auc, sub, risk, horizons, **kw)
    if t is not None:
        for j, hz in enumerate(t.times):
            if not np.isfinite(t.estimate[j]):
                out.notes.append(f"{out.site}: {m.name} td_auc at {hz:g} y has no cases")
                continue
            out.rows.append((m.name, out.site, "all", float(hz), "td_auc", t.estimate[j],
                             t.ci_low[j], t.ci_high[j], np.nan, int(t.cases[j] + t.controls[j]),
                             int(t.cases[j]), t.method))  # fmt: skip
    if ref is None or ref.survival is None or ref.name == m.name:
        return
    both = ok & np.isfinite(ref.at(h))
    pair = target.subset(both)
    if pair.n_events < k or pair.n - pair.n_events < k:
        return
    c = out.attempt(
        f"{m.name} vs {ref.name} harrell_c", ev.compare_concordance, pair, s[both],
        ref.at(h)[both], kind="harrell", **kw,
    )  # fmt: skip
    if c is not None:
        out.rows.append((m.name, out.site, "all", None, f"delta_harrell_c_vs_{ref.name}",
                         c.difference, c.ci_low, c.ci_high, c.p_value, c.n, c.events,
                         c.method))  # fmt: skip


def evaluate_models(
    frame: pd.DataFrame,
    models: Sequence[ScoredModel],
    *,
    reference: str,
    dev_sites: Sequence[str],
    settings: ReportSettings,
    grade2: np.ndarray | None = None,
) -> ComparisonTable:
    """The comparison table of ``models`` per site (and the external sites pooled).

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per patient: ``site``, ``prevalent_vf`` (0/1, NaN unknown),
        ``followup_years`` (years), ``event_type`` (0/1/2).
    models : sequence of ScoredModel
        Aligned with ``frame``'s rows.
    reference : str
        Name of the model every other is compared with (paired tests).
    dev_sites : sequence of str
        Development site(s): listed first; in-sample for models trained there.
    settings : ReportSettings
        Horizons (the c-index ranks the last), interval settings, ``min_cell_count`` (a
        group needs that many cases and non-cases for a metric).
    grade2 : numpy.ndarray, optional, shape (n,)
        1 = prevalent fracture of Genant grade >= 2, 0 = not, NaN unknown.

    Returns
    -------
    ComparisonTable
    """
    ref = next((m for m in models if m.name == reference), None)
    y_any = frame["prevalent_vf"].to_numpy(dtype=float)
    time = frame["followup_years"].to_numpy(dtype=float)
    event = frame["event_type"].to_numpy()
    rows: list[tuple] = []
    notes: list[str] = []
    if ref is None:
        notes.append(f"reference model {reference} is missing: no paired comparisons")
    for site, mask in site_groups(frame["site"].tolist(), dev_sites):
        out = _Rows(site)
        target = (
            ev.SurvivalTarget.from_arrays(time[mask], event[mask])
            if (event[mask] == 1).any()
            else None
        )
        for m in models:
            mm, rr = _masked(m, mask), _masked(ref, mask)
            if mm.detection is not None:
                _detection(out, mm, rr, "detection_auc", y_any[mask], settings.min_cell_count)
                if grade2 is not None:
                    _detection(
                        out, mm, rr, "detection_auc_grade2", grade2[mask],
                        settings.min_cell_count,
                    )  # fmt: skip
            if mm.survival is not None and target is not None:
                _survival(out, mm, rr, target, settings)
            elif mm.survival is not None:
                out.notes.append(f"{site}: no incident fracture, survival metrics not computed")
        rows += out.rows
        notes += out.notes
    table = pd.DataFrame(rows, columns=list(EVALUATION_COLUMNS))
    table["horizon"] = table["horizon"].astype("float64")
    for col in ("n", "events"):
        table[col] = table[col].astype("Int64")
    return ComparisonTable(table, tuple(dict.fromkeys(notes)))


def _masked(m: ScoredModel | None, mask: np.ndarray) -> ScoredModel | None:
    if m is None:
        return None
    return ScoredModel(
        m.name,
        m.label,
        m.kind,
        None if m.detection is None else m.detection[mask],
        None if m.survival is None else m.survival[mask],
    )


SYNTHETIC_NOTICE = (
    "**Synthetic data only.** Every patient, scan, outcome and weight behind these numbers "
    "was generated by vfrisk (`vfrisk synth`); they say whether the software works, not how "
    "it would perform on patients. Not for clinical use."
)


def _lookup(rows: pd.DataFrame) -> dict[tuple, pd.Series]:
    return {
        (r.score, r.site, None if pd.isna(r.horizon) else float(r.horizon), r.metric): r
        for r in rows.itertuples(index=False)
    }


def _cell(row: object | None) -> str:
    if row is None or not np.isfinite(row.estimate):
        return "-"
    if np.isfinite(row.ci_low):
        return f"{row.estimate:.3f} ({row.ci_low:.3f}-{row.ci_high:.3f})"
    return f"{row.estimate:.3f}"


def _p(row: object | None) -> str:
    if row is None or not np.isfinite(row.p_value):
        return "-"
    return "<0.001" if row.p_value < 0.001 else f"{row.p_value:.3f}"


def to_markdown(
    table: ComparisonTable,
    frame: pd.DataFrame,
    models: Sequence[ScoredModel],
    *,
    reference: str,
    dev_sites: Sequence[str],
    settings: ReportSettings,
    grade2_known: bool,
    notes: Sequence[str] = (),
) -> str:
    """The paper-shaped table per site, the verdict and the notes, as Markdown.

    Counts below ``settings.min_cell_count`` are shown as ``<k``.
    """
    from engine.report.suppress import count_text

    k = settings.min_cell_count
    look = _lookup(table.rows)
    ref_label = next((m.label for m in models if m.name == reference), reference)
    hz = settings.horizons
    lines = [
        "# vfrisk experiments: the study's comparisons",
        "",
        f"> {SYNTHETIC_NOTICE}",
        "",
        "Detection: AUROC for a prevalent vertebral fracture of any Genant grade (the "
        "clinical table's `prevalent_vf`)"
        + (
            "; grade >= 2 against all other patients, grade from the generator's truth"
            if grade2_known
            else "; the grade >= 2 AUROC needs the grade, which the clinical table does not "
            "hold (`--truth COHORT` adds it for a generated cohort)"
        )
        + f". C-index: Harrell's, of the {settings.c_horizon}-year risk; deaths censored. "
        "td-AUROC: cumulative/dynamic with inverse-probability-of-censoring weights. 95 % "
        "intervals: DeLong for detection, patient bootstrap (influence function above "
        f"{settings.bootstrap_max_n} patients) for the rest. p: paired test against "
        f"**{ref_label}** on the patients both have (DeLong for detection AUROC, paired "
        "bootstrap for the c-index). Comparators are fitted on the development site only.",
        "",
    ]
    for site, mask in site_groups(frame["site"].tolist(), dev_sites):
        g = frame[mask]
        role = (
            "development site: the networks and comparators were fitted here, in-sample"
            if site in dev_sites
            else "all external sites pooled"
            if site == EXTERNAL
            else "external site"
        )
        lines += [
            f"## {site} ({role})",
            "",
            f"{count_text(len(g), k)} patients, {count_text(int((g['event_type'] == 1).sum()), k)}"
            f" incident fractures, {count_text(int((g['event_type'] == 2).sum()), k)} deaths, "
            f"{count_text(int((g['prevalent_vf'] == 1).sum()), k)} prevalent fractures.",
            "",
        ]
        head = ["Model", "Detection AUROC (any grade)", "p"]
        if grade2_known:
            head += ["Detection AUROC (grade >= 2)", "p"]
        head += ["C-index", "p"] + [f"{h}-y AUROC" for h in hz]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for m in models:
            is_ref = m.name == reference
            cells = [m.label + (" (reference)" if is_ref else "")]
            metrics = ["detection_auc"] + (["detection_auc_grade2"] if grade2_known else [])
            metrics.append("harrell_c")
            for metric in metrics:
                cells.append(_cell(look.get((m.name, site, None, metric))))
                delta = look.get((m.name, site, None, f"delta_{metric}_vs_{reference}"))
                cells.append("ref" if is_ref else _p(delta))
            cells += [_cell(look.get((m.name, site, float(h), "td_auc"))) for h in hz]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Does the deep model beat the simple baselines?", ""]
    lines += [f"- {s}" for s in verdict(table, models, reference=reference, dev_sites=dev_sites,
                                          alpha=settings.alpha)]  # fmt: skip
    all_notes = [*notes, *table.notes]
    if all_notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in all_notes]
    return "\n".join(lines) + "\n"


def verdict(
    table: ComparisonTable,
    models: Sequence[ScoredModel],
    *,
    reference: str,
    dev_sites: Sequence[str],
    alpha: float = 0.05,
) -> list[str]:
    """Plain sentences: does the reference model beat each baseline, and the other variants,
    on the c-index at the external sites (pooled when there are several)?"""
    look = _lookup(table.rows)
    labels = {m.name: m.label for m in models}
    sites = sorted({s for s in table.rows["site"] if s not in dev_sites})
    groups = [EXTERNAL] if EXTERNAL in sites else sites
    if not groups:
        return ["No external site in the database: nothing to judge the models on "
                "(development-site numbers are in-sample)."]  # fmt: skip
    ref_label = labels.get(reference, reference)
    out = []
    for site in groups:
        ref_c = look.get((reference, site, None, "harrell_c"))
        if ref_c is None:
            out.append(f"{site}: the reference model has no c-index here; no verdict.")
            continue
        beaten, not_sig, worse = [], [], []
        for name in [b for b in BASELINES if b in labels] + [
            m.name for m in models if m.kind == "comparator" and m.name not in BASELINES
        ]:
            d = look.get((name, site, None, f"delta_harrell_c_vs_{reference}"))
            c = look.get((name, site, None, "harrell_c"))
            if d is None or c is None:
                continue
            text = f"{labels[name]} {c.estimate:.3f} (p {_p(d)})"
            # d = baseline - reference: negative means the reference is better
            if d.estimate < 0 and d.p_value < alpha:
                beaten.append(text)
            elif d.estimate < 0:
                not_sig.append(text)
            else:
                worse.append(text)
        where = "the external sites pooled" if site == EXTERNAL else site
        answer = "YES" if beaten and not not_sig and not worse else "NO"
        out.append(
            f"{answer} at {where}: {ref_label} c-index {ref_c.estimate:.3f}. "
            f"Significantly better than: {', '.join(beaten) or 'none'}. "
            f"Better but not significantly: {', '.join(not_sig) or 'none'}. "
            f"Not better than: {', '.join(worse) or 'none'}."
        )
        for m in models:
            if m.kind != "variant" or m.name == reference:
                continue
            for metric, what in (("harrell_c", "c-index"), ("detection_auc", "detection AUROC")):
                d = look.get((m.name, site, None, f"delta_{metric}_vs_{reference}"))
                if d is None:
                    continue
                out.append(
                    f"{where}: {ref_label} vs {m.label}, {what} difference "
                    f"{-d.estimate:+.3f} (p {_p(d)})"
                    + ("" if d.p_value < alpha else ": not significant")
                    + "."
                )
    return out
