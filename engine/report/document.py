"""The report as a document: sections of paragraphs, bullet lists and tables of text.

Built once from a :class:`~engine.report.run.Report`, with small counts already
suppressed, then written as Markdown, HTML or JSON by ``engine.report.render``; so every
format shows the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from engine.report.run import Report
from engine.report.suppress import count_text

__all__ = ["SYNTHETIC_NOTICE", "Bullets", "Document", "Section", "Table", "build_document"]

SYNTHETIC_NOTICE = (
    "**SYNTHETIC, not for clinical use.** The sample cohort that vfrisk generates "
    "(`vfrisk synth`, `vfrisk demo`) and any model weights shipped with vfrisk are "
    "SYNTHETIC: numbers measured on them show that the software works, not how a model "
    "performs on patients. Do not use this report for clinical decisions."
)
_LABELS = {"model": "Model", "frax_mof": "FRAX MOF", "frax_hip": "FRAX hip", "l1_hu": "L1 HU"}
_PUBLISHED = (
    "For reference, Kong et al. (Eur Radiol 2025), external validation (2 hospitals, 1,506 "
    "patients): detection AUROC 0.80, c-index 0.68 vs FRAX 0.66 (p < 0.01), td-AUC "
    "0.79 / 0.71 / 0.71 at 2 / 3 / 5 years."
)


@dataclass(frozen=True)
class Table:
    """A table of text cells."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Bullets:
    """A bullet list."""

    items: tuple[str, ...]


@dataclass(frozen=True)
class Section:
    """A titled section: paragraphs (str, inline Markdown), bullet lists and tables."""

    title: str
    blocks: tuple[str | Bullets | Table, ...]


@dataclass(frozen=True)
class Document:
    """Title, the SYNTHETIC notice, header lines and sections."""

    title: str
    notice: str
    header: tuple[str, ...]
    sections: tuple[Section, ...]


class _Lookup:
    """Rows of the evaluation table by (score, site, subgroup, horizon, metric)."""

    def __init__(self, rows: pd.DataFrame) -> None:
        self.rows = {}
        for r in rows.itertuples(index=False):
            h = None if pd.isna(r.horizon) else float(r.horizon)
            self.rows[(r.score, r.site, r.subgroup, h, r.metric)] = r

    def get(
        self,
        score: str,
        site: str,
        metric: str,
        horizon: float | None = None,
        subgroup: str = "all",
    ):  # noqa: ANN201 - a row namedtuple or None
        h = None if horizon is None else float(horizon)
        return self.rows.get((score, site, subgroup, h, metric))


def _num(x: float, digits: int = 3, sign: bool = False) -> str:
    if x is None or not np.isfinite(x):
        return "-"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _ci(r, digits: int = 3, sign: bool = False) -> str:  # noqa: ANN001
    if r is None:
        return "-"
    text = _num(r.estimate, digits, sign)
    if np.isfinite(r.ci_low) and np.isfinite(r.ci_high):
        text += f" ({_num(r.ci_low, digits)} to {_num(r.ci_high, digits)})"
    return text


def _p(r) -> str:  # noqa: ANN001
    if r is None or not np.isfinite(r.p_value):
        return "-"
    return "<0.001" if r.p_value < 0.001 else f"{r.p_value:.3f}"


def _count(r, k: int, attr: str = "estimate") -> str:  # noqa: ANN001
    return "-" if r is None else count_text(getattr(r, attr), k)


def _sites(report: Report) -> list[str]:
    return ["all", *report.cohort.sites]


def _site_label(site: str) -> str:
    return "pooled" if site == "all" else site


def _cohort_section(report: Report, look: _Lookup) -> Section:
    k, c = report.settings.min_cell_count, report.cohort
    hu = c.has_l1_hu
    cols = [
        "Site",
        "Patients",
        "Incident VF",
        "Deaths",
        "Prevalent VF",
        "Median follow-up (y)",
        "Missing FRAX MOF",
        "Missing FRAX hip",
    ] + (["Missing L1 HU"] if hu else [])
    rows = []
    for site in _sites(report):

        def g(metric: str, site: str = site):  # noqa: ANN202 - a row or None
            return look.get("cohort", site, metric)

        med = g("median_followup")
        row = [_site_label(site)] + [
            _count(g(m), k) for m in ("patients", "events", "deaths", "prevalent_vf")
        ]
        row += [
            _num(med.estimate, 2) if med else "-",
            _count(g("missing_frax_mof"), k),
            _count(g("missing_frax_hip"), k),
        ]
        if hu:
            row.append(_count(g("missing_l1_hu"), k))
        rows.append(tuple(row))
    links = c.links
    text = [
        f"Cohort: {c.rule}. Clinical table: {count_text(c.clinical_patients, k)} patients; "
        f"linked to an index scan {count_text(links.get('linked', 0), k)}, without a scan "
        f"{count_text(links.get('no_scan', 0), k)}"
        + (
            f"; linked but without a prediction of this model "
            f"{count_text(c.linked_without_prediction, k)}."
            if c.model
            else "."
        ),
        "Incident VF = vertebral fracture after the index scan (event_type 1); deaths before "
        "fracture (event_type 2) compete. Median follow-up by reverse Kaplan-Meier. Each score "
        "is evaluated on the patients who have it and each comparison on those with both "
        f"(complete cases); counts below {k} are shown as <{k}.",
    ]
    return Section("Cohort", (*text, Table(tuple(cols), tuple(rows))))


def _study_section(report: Report, look: _Lookup) -> Section:
    hs, hc = report.settings.horizons, report.settings.c_horizon
    cols = [
        "Site",
        "Detection AUROC",
        f"Harrell C ({hc} y risk)",
        f"Uno C (tau {hc} y)",
        *[f"td-AUC {h} y" for h in hs],
        "FRAX MOF Harrell C",
        "Delta C vs FRAX MOF",
        "p",
    ]
    rows = []
    for site in _sites(report):
        delta = look.get("model", site, "delta_harrell_c_vs_frax_mof")
        rows.append(
            (
                _site_label(site),
                _ci(look.get("model", site, "detection_auc")),
                _ci(look.get("model", site, "harrell_c")),
                _ci(look.get("model", site, "uno_c", hc)),
                *[_ci(look.get("model", site, "td_auc", h)) for h in hs],
                _ci(look.get("frax_mof", site, "harrell_c")),
                _ci(delta, sign=True),
                _p(delta),
            )
        )
    return Section(
        "Discrimination: the study's table",
        (
            "Detection: AUROC of p_fracture for prevalent VF (DeLong interval). Prediction: "
            f"c-index of the {hc}-year risk; cumulative/dynamic td-AUC of the risk at each "
            "horizon (cases: fracture by t; controls: followed beyond t). 95% intervals.",
            Table(tuple(cols), tuple(rows)),
            _PUBLISHED,
        ),
    )


def _comparator_section(report: Report, look: _Lookup) -> Section:
    k, hs, hc = report.settings.min_cell_count, report.settings.horizons, report.settings.c_horizon
    scores = ["frax_mof", "frax_hip"] + (["l1_hu"] if report.cohort.has_l1_hu else [])
    cols = [
        "Site",
        "Score",
        "Patients",
        "Events",
        "Harrell C",
        f"Uno C (tau {hc} y)",
        *[f"td-AUC {h} y" for h in hs],
    ]
    rows = []
    for site in _sites(report):
        for s in scores:
            c = look.get(s, site, "harrell_c")
            rows.append(
                (
                    _site_label(site),
                    _LABELS[s],
                    _count(c, k, "n"),
                    _count(c, k, "events"),
                    _ci(c),
                    _ci(look.get(s, site, "uno_c", hc)),
                    *[_ci(look.get(s, site, "td_auc", h)) for h in hs],
                )
            )
    blocks: list = [
        "FRAX 10-year major osteoporotic (MOF) and hip probabilities as recorded in the "
        "clinical table, ranked as risk scores"
        + (
            "; L1 trabecular attenuation with lower HU = higher risk."
            if report.cohort.has_l1_hu
            else "; no L1 HU baseline (no `biomarkers` table with L1 trabecular_hu)."
        )
    ]
    if report.cohort.model is None:
        blocks.append(
            "No model predictions in this database, so this is a FRAX-only report. Score the "
            f"scans with `vfrisk score --db {report.cohort.db}` and run `vfrisk report` again "
            "to add the model."
        )
    blocks.append(Table(tuple(cols), tuple(rows)))
    return Section("Comparators: FRAX and L1 HU", tuple(blocks))


def _paired_section(report: Report, look: _Lookup) -> Section:
    k, hc = report.settings.min_cell_count, report.settings.c_horizon
    comps = ["frax_mof", "frax_hip"] + (["l1_hu"] if report.cohort.has_l1_hu else [])
    cols = (
        "Site",
        "Comparator",
        "Patients",
        "Events",
        "Delta Harrell C",
        "p",
        f"Delta Uno C (tau {hc} y)",
        "p",
    )
    rows = []
    for site in _sites(report):
        for comp in comps:
            h = look.get("model", site, f"delta_harrell_c_vs_{comp}")
            u = look.get("model", site, f"delta_uno_c_vs_{comp}", hc)
            rows.append(
                (
                    _site_label(site),
                    _LABELS[comp],
                    _count(h, k, "n"),
                    _count(h, k, "events"),
                    _ci(h, sign=True),
                    _p(h),
                    _ci(u, sign=True),
                    _p(u),
                )
            )
    blocks: list = [
        "Model minus comparator on the patients with both scores, same resamples (bootstrap) "
        "or influence functions; two-sided p-value for no difference.",
        Table(cols, tuple(rows)),
    ]
    if report.cohort.has_l1_hu:
        d = look.get("model", "all", "delta_detection_auc_vs_l1_hu")
        auc_model = _ci(look.get("model", "all", "detection_auc"))
        auc_hu = _ci(look.get("l1_hu", "all", "detection_auc"))
        blocks.append(
            f"Detection, model vs L1 HU (pooled, DeLong): AUROC {auc_model} vs {auc_hu}; "
            f"difference {_ci(d, sign=True)}, p {_p(d)}."
        )
    return Section("Model vs comparators", tuple(blocks))


def _calibration_section(report: Report, look: _Lookup) -> Section:
    cols = ("Site", "Horizon (y)", "Slope", "Intercept", "ICI", "E50", "Brier")
    rows, ibs = [], []
    for site in _sites(report):
        for h in report.settings.horizons:

            def g(metric: str, h: int = h, site: str = site):  # noqa: ANN202 - a row or None
                return look.get("model", site, metric, h)

            rows.append(
                (
                    _site_label(site),
                    str(h),
                    _ci(g("cal_slope"), 2),
                    _ci(g("cal_intercept"), 2),
                    _ci(g("ici")),
                    _ci(g("e50")),
                    _ci(g("brier")),
                )
            )
        r = look.get("model", site, "ibs", report.settings.c_horizon)
        ibs.append(f"{_site_label(site)} {_num(r.estimate) if r else '-'}")
    return Section(
        "Calibration",
        (
            "Calibration slope (ideal 1) and intercept (ideal 0) on the complementary log-log "
            "scale with censoring weights; ICI and E50: mean and median absolute distance of "
            "the smoothed observed risk from the predicted; Brier score with deaths as known "
            "non-fractures.",
            Table(cols, tuple(rows)),
            f"Integrated Brier score ({report.settings.horizons[0]}-"
            f"{report.settings.c_horizon} y): " + ", ".join(ibs) + ".",
        ),
    )


def _subgroup_section(report: Report, look: _Lookup) -> Section:
    k, model = report.settings.min_cell_count, report.cohort.model is not None
    subs = sorted(
        {sg for (_, _, sg, _, _) in look.rows if sg != "all"},
        key=lambda s: (s.split("=")[0] != "sex", s),
    )
    scores = ["model", "frax_mof"] if model else ["frax_mof", "frax_hip"]
    cols = ["Site", "Subgroup", "Patients", "Events"] + [f"{_LABELS[s]} Harrell C" for s in scores]
    cols += ["Delta C vs FRAX MOF", "p"] if model else []
    rows = []
    for site in _sites(report):
        for sg in subs:
            n = look.get("cohort", site, "patients", subgroup=sg)
            if n is None:
                continue
            row = [
                _site_label(site),
                sg,
                _count(n, k),
                _count(look.get("cohort", site, "events", subgroup=sg), k),
            ]
            row += [_ci(look.get(s, site, "harrell_c", subgroup=sg)) for s in scores]
            if model:
                d = look.get("model", site, "delta_harrell_c_vs_frax_mof", subgroup=sg)
                row += [_ci(d, sign=True), _p(d)]
            rows.append(tuple(row))
    return Section("Subgroups", (Table(tuple(cols), tuple(rows)),))


def _tripod_section(report: Report) -> Section:
    c, st, k = report.cohort, report.settings, report.settings.min_cell_count
    first, last = c.scan_dates
    f = c.frame
    m = c.model
    if m is None:
        model = "none: no model predictions in the database (FRAX-only report)"
    else:
        model = (
            f"`{m.model_id}` ({m.name or 'unnamed'}), sha256 {m.sha256 or '-'}, preprocessing "
            f"{m.preprocessing_version or '-'}, {m.n_predictions} predictions"
        )
        if m.card:
            keys = ("intended_use", "training_data", "synthetic", "description")
            model += "; card: " + "; ".join(
                f"{key}: {m.card[key]}" for key in keys if key in m.card
            )
    items = (
        f"Data source: {c.db}; sites {', '.join(c.sites) or '-'}; scans {first or '-'} to "
        f"{last or '-'}.",
        f"Participants: {c.rule}; {count_text(len(f), k)} patients, "
        f"{count_text(int((f['event_type'] == 1).sum()), k)} incident VF, "
        f"{count_text(int((f['event_type'] == 2).sum()), k)} deaths.",
        "Outcome: incident vertebral fracture after the index scan, time in years from the "
        "scan (followup_years); death before fracture is a competing event (censored for "
        "c-index and td-AUC, competing for Brier and calibration); prevalent VF at the scan "
        "for detection.",
        f"Model: {model}.",
        "Comparators: FRAX MOF and hip 10-year probabilities as recorded (in the synthetic "
        "cohort SIMULATED, FRAX itself is a closed calculator)"
        + (", L1 trabecular HU." if c.has_l1_hu else "."),
        f"Missing data: complete cases per score and per comparison, counts in the Cohort "
        f"table; linked scans without a prediction: {count_text(c.linked_without_prediction, k)}.",
        f"Analysis: horizons {', '.join(map(str, st.horizons))} years; intervals {st.ci} "
        f"(bootstrap {st.n_boot} resamples up to {st.bootstrap_max_n} patients, influence "
        f"function above; seed {st.seed}), level {1 - st.alpha:.0%}; counts below {k} "
        "suppressed in every export.",
        "SYNTHETIC: the sample cohort and shipped weights are synthetic and not for clinical use.",
    )
    return Section("Reporting checklist (TRIPOD+AI)", (Bullets(items),))


def _notes_section(report: Report, limit: int = 20) -> Section | None:
    if not report.notes:
        return None
    items = list(report.notes[:limit])
    if len(report.notes) > limit:
        items.append(f"... and {len(report.notes) - limit} more (all in the JSON export)")
    return Section("Not estimable", (Bullets(tuple(items)),))


def build_document(report: Report) -> Document:
    """The report as a :class:`Document` (small counts suppressed)."""
    look = _Lookup(report.evaluation)
    c = report.cohort
    model = (
        f"`{c.model.model_id}` ({c.model.name or 'unnamed'})"
        if c.model
        else "none (FRAX-only report)"
    )
    header = (
        f"Run `{report.run_id}`, {report.generated_at}, database `{c.db}`.",
        f"Model: {model}.",
    )
    sections = [_cohort_section(report, look)]
    if c.model is not None:
        sections.append(_study_section(report, look))
    sections.append(_comparator_section(report, look))
    if c.model is not None:
        sections += [_paired_section(report, look), _calibration_section(report, look)]
    if report.settings.subgroups:
        sections.append(_subgroup_section(report, look))
    sections.append(_tripod_section(report))
    notes = _notes_section(report)
    if notes:
        sections.append(notes)
    return Document("vfrisk evaluation report", SYNTHETIC_NOTICE, header, tuple(sections))
