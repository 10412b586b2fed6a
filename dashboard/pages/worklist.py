"""Worklist: high-risk patients for follow-up, export (audited), and a patient view."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import streamlit as st

from dashboard import data, figures
from dashboard.common import SYNTHETIC_NOTE, context, require, show_figure, show_table, today, who
from dashboard.export import present, worklist_csv
from dashboard.ids import key_path, load_key
from engine.errors import VfriskError
from engine.store.dashboard_tables import WorklistFilter

ctx = context()
st.title("Follow-up worklist")
st.caption(SYNTHETIC_NOTE)
require(ctx, "clinical", "predictions")
f, s = ctx.filters, ctx.settings

c1, c2, c3, c4 = st.columns(4)
horizon = c1.selectbox("Horizon (years)", [1, 2, 3, 4, 5], index=4, key="wl_h")
min_risk = c2.number_input(
    f"{horizon}-year risk at least", 0.0, 1.0, 0.2, step=0.01, format="%.2f", key="wl_risk"
)
p_cut = None
if c3.toggle("Detected prevalent fracture", key="wl_det"):
    p_cut = c3.number_input("P(fracture) at least", 0.0, 1.0, 0.5, step=0.05, key="wl_p")
hu_cut = None
if c4.toggle("Low L1 HU", key="wl_hu"):
    hu_cut = c4.number_input(
        "L1 trabecular HU at most", -200.0, 600.0, 110.0, step=5.0, key="wl_hu_cut",
        help="Pickhardt 2013: <= 160 HU is 90% sensitive, <= 110 HU > 90% specific for "
        "osteoporosis.",
    )  # fmt: skip
w = WorklistFilter(horizon=horizon, min_risk=min_risk, min_p_fracture=p_cut, max_l1_hu=hu_cut)
try:
    key = load_key(key_path(ctx.db, s.pseudonym_key_file))
except VfriskError as exc:
    st.error(f"[{exc.code}] {exc.message}")
    st.stop()


def _audit_show_ids() -> None:
    if not st.session_state.get("wl_show_ids"):
        return
    try:
        data.record_audit(
            ctx.db, s.lock_timeout_s, action="show_identifiers", who=who(),
            filters={"cohort": dataclasses.asdict(f), "worklist": dataclasses.asdict(w)},
            rows=0,
        )  # fmt: skip
    except VfriskError as exc:  # no audit row, no identifiers
        st.session_state["wl_show_ids"] = False
        st.session_state["wl_audit_error"] = f"[{exc.code}] {exc.message}"


# audited actions need a database this process can write (not a read-only share)
audited = data.writable(ctx.db)
if not audited:
    st.session_state["wl_show_ids"] = False
    st.warning(
        f"{ctx.db} cannot be written from here (a read-only file or folder): identifiers and "
        "the export, which must be recorded in its audit table, are off. Open a writable "
        "copy to use them."
    )
show_ids = st.toggle(
    "Show patient identifiers (for follow-up; recorded in the audit table)",
    key="wl_show_ids",
    on_change=_audit_show_ids,
    disabled=not audited,
)
if "wl_audit_error" in st.session_state:
    st.error(
        "Identifiers stay hidden: showing them must be recorded in the audit table, which "
        "could not be written. " + st.session_state.pop("wl_audit_error")
    )
rows, total = ctx.q("worklist", f, w, s.worklist_rows)
st.metric("Patients matching", f"{total:,}")
if total == 0:
    st.info("No patient meets these criteria; lower the risk threshold or widen the filters.")
    st.stop()
shown = present(rows, show_ids=show_ids, key=key)
if total > len(shown):
    st.caption(f"Showing the {len(shown):,} highest-risk of {total:,}; the export holds up to "
               f"{s.export_max_rows:,}.")  # fmt: skip
show_table(shown, "worklist")
user = who()
st.download_button(
    "Export worklist CSV",
    data=lambda: worklist_csv(
        ctx.db, s.lock_timeout_s, f, w, limit=s.export_max_rows, show_ids=show_ids, key=key,
        who=user,
    ),
    file_name=f"vfrisk_worklist_{today().isoformat()}.csv",
    mime="text/csv",
    key="wl_export",
    on_click="ignore",
    icon=":material/download:",
    disabled=not audited,
)  # fmt: skip
st.caption("Every export is recorded in the audit table (who, when, filters, rows).")

st.subheader("Patient view")
choice = st.selectbox("Patient", list(range(len(shown))), format_func=lambda i: shown["patient"][i],
                      key="wl_patient")  # fmt: skip
uid = rows["series_uid"][choice]
pred, levels = ctx.q("patient_detail", uid, f.model_id)
left, right = st.columns(2)
with left:
    if len(pred):
        risks = [float(pred[f"risk_{y}y"][0]) for y in range(1, 6)]
        show_figure(
            figures.risk_curve_figure(risks, f"{shown['patient'][choice]} | {figures.SYNTHETIC}"),
            "patient_risk",
        )
        st.metric(
            "Detection probability (prevalent fracture)", f"{float(pred['p_fracture'][0]):.3f}"
        )
    show_table(levels, "patient_levels")
with right:
    png = ctx.q("qa_png", uid)
    if png is None and s.qa_dir:
        from engine.prepare import qa_png_path

        png = str(qa_png_path(s.qa_dir, uid))
    if png and Path(png).is_file():
        st.image(
            png, caption="QA: sagittal view and one axial slice per level with muscle outlines"
        )
    else:
        st.info("No QA picture for this scan (drawn by `vfrisk score`).")
