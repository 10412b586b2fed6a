"""Score a scan: upload one series (zip, files or NIfTI), score it in-process, show the result.

Uses ``engine.score.adhoc.score_paths``, the same path as ``vfrisk score`` (so the risk is
the one the database would hold) with the model chosen in the sidebar; nothing is written
to the database.
"""

from __future__ import annotations

import dataclasses
import hashlib
import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import figures
from dashboard.common import SYNTHETIC_NOTE, context, show_figure, show_table
from dashboard.upload import UploadLimits, extract_upload, scan_inputs
from engine.config import load_config
from engine.errors import VfriskError

ctx = context()
st.title("Score a scan")
st.caption(SYNTHETIC_NOTE)
if ctx.error is not None:
    st.error(ctx.error)
    st.stop()
s = ctx.settings
models = ctx.options["models"]
row = models[models["model_id"] == ctx.filters.model_id] if len(models) else models


@st.cache_resource(show_spinner=False, max_entries=2)
def _model(path: str | None, version: str):  # noqa: ANN202 - a LoadedModel
    from engine.score.model import load_model

    return load_model(path, version, "auto")


config = load_config(None)
model_path = None
if len(row):
    from engine.store import Store

    with Store(ctx.db, lock_timeout_s=s.lock_timeout_s).read() as con:
        found = con.execute("SELECT path FROM models WHERE model_id = ?",
                            [ctx.filters.model_id]).fetchone()  # fmt: skip
    model_path = found[0] if found and found[0] else None
st.write(
    "Upload a zip of one DICOM series, the files of one series, or one NIfTI volume "
    f"(at most {s.max_upload_mb} MB; zips at most {s.max_members:,} members and "
    f"{s.max_unpacked_mb:,} MB unpacked). It is scored in this process with "
    + (f"model `{ctx.filters.model_id}`" if model_path else "the configured model")
    + "; nothing is written to the database."
)
if model_path is None:
    st.info(
        "No model of this database is chosen (none has scored scans yet): uploads are scored "
        "with `[score] model` of the configuration, else the shipped weights; train one with "
        "`vfrisk train` if neither exists."
    )
uploads = st.file_uploader(
    "Scan files", accept_multiple_files=True, key="up_files", help="zip, DICOM files or .nii.gz"
)
if not uploads:
    st.stop()
blobs = [(u.name, u.getvalue()) for u in uploads]
digest = hashlib.sha256(b"".join(hashlib.sha256(b).digest() for _, b in blobs)).hexdigest()
cache = st.session_state.setdefault("_adhoc", {})
key = (digest, model_path)
if key not in cache:
    from engine.score.adhoc import score_paths

    with tempfile.TemporaryDirectory(prefix="vfrisk-upload-") as tmp, st.spinner("Scoring ..."):
        try:
            written = extract_upload(blobs, Path(tmp), UploadLimits.from_settings(s))
            model = _model(model_path, str(config["preprocessing"]["version"]))
            qa_dir = Path(tempfile.mkdtemp(prefix="vfrisk-qa-", dir=tmp))
            result = score_paths(scan_inputs(written), config, qa_dir=qa_dir, model=model)
            png = result.prepared.qa_png.read_bytes() if result.prepared.qa_png else None
            cache[key] = ("ok", result, png)
        except VfriskError as exc:
            cache[key] = ("error", f"[{exc.code}] {exc.message}", None)
status, result, png = cache[key]
if status == "error":
    st.error(f"Refused: {result}")
    st.stop()

pred = result.prediction
risk = list(pred.risk or ())
c1, c2, c3 = st.columns(3)
if pred.p_fracture is not None:
    c1.metric("Detection probability (prevalent fracture)", f"{pred.p_fracture:.3f}")
if len(risk) >= 5:
    c2.metric("5-year risk", f"{risk[4]:.3f}")
c3.metric("Model", result.model_id)
if risk:
    show_figure(
        figures.risk_curve_figure(risk[:5], f"uploaded scan | {figures.SYNTHETIC}"),
        "upload_risk",
    )
    show_table(
        pd.DataFrame({"year": list(range(1, len(risk) + 1)), "risk": risk}), "upload_risk_table"
    )
bio = result.prepared.biomarkers
levels = pd.DataFrame([dataclasses.asdict(lv) for lv in bio.levels])
left, right = st.columns(2)
with left:
    st.subheader("Biomarkers")
    show_table(levels, "upload_levels")
    st.caption(f"QA flags: {', '.join(result.prepared.qa_flags) or 'none'}")
with right:
    if png:
        st.image(png, caption="QA: sagittal view and an axial slice per level")
