"""Benchmark: accuracy of the built-in segmenter against the generator's ground truth.

Generates external-site patients (``ext_a`` 1 mm, ``ext_b`` 5 mm slices) with a seed not
used in development, segments each soft-kernel series with ``engine.anatomy.segment`` and
compares with ``truth/PATIENT/bodies.nii.gz`` and ``segmentation.nii.gz``:

* body Dice per level (T12-L4, levels wholly in the scan), vs the body-only labels;
* muscle Dice per label (psoas vs ``iliopsoas_*``, paraspinal vs ``autochthon_*``), both
  restricted to the slices of the true T12-L4 bodies;
* level accuracy: a level in the scan is correct when the predicted body of that name
  overlaps the true one with Dice >= 0.5, and no other level name is given to it;
* time of ``segment`` per CT;
* biomarkers from the built-in segmentation (``engine.anatomy.biomarkers``) against the
  truth, over the levels in the scan that the segmenter found: the share whose trabecular
  HU is within 10 HU of ``hu_<LEVEL>`` + site offset (ext_a +6, ext_b -8) + 15 HU with
  contrast (the generator adds U(10, 20) HU; cemented levels left out), the Genant grade's
  quadratic-weighted kappa against ``genant_grade``, its sensitivity for grade >= 2 and
  the confusion matrix (true grade x estimated grade); ``biomarker_scores`` returns
  these as records (tests/engine/anatomy/test_accuracy.py asserts on them).

Figures are given per slice thickness and overall (median and 5th percentile).

``--prevalent-ratio X`` multiplies every site's ``prevalent_ratio`` in a temporary copy of
the shipped profiles (default 1: the shipped file unchanged) so that more fractures occur;
``--bmd-shift HU`` adds HU to every site's ``bmd_shift_hu`` there (say -60: most spines
severely osteoporotic, trabecular HU near the generator's floor of 30).

Usage: python bench/anatomy_accuracy.py [--patients 12] [--seed 9001] [--resolution low]
       [--prevalent-ratio 1] [--bmd-shift 0]
"""

from __future__ import annotations

import argparse
import math
import re
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pydicom

from engine.anatomy.biomarkers import measure_biomarkers
from engine.anatomy.labels import BODY_LEVELS
from engine.anatomy.segment import segment
from engine.load import load_nifti, load_volume
from engine.synth.cohort import SynthRequest, main_series, series_files, synthesize
from engine.synth.profiles import DEFAULT_PROFILES

#: predicted id -> TotalSegmentator id in truth/segmentation.nii.gz
MUSCLE_TRUTH = {11: 88, 12: 89, 13: 86, 14: 87}
MUSCLE_NAMES = {11: "psoas_left", 12: "psoas_right", 13: "paraspinal_left", 14: "paraspinal_right"}
SITE_OFFSET_HU = {"dev": 0.0, "ext_a": 6.0, "ext_b": -8.0}  # sample_data/site_profiles.toml
CONTRAST_HU = 15.0  # the generator adds U(10, 20) HU to trabecular bone with contrast


def _weighted_kappa(a: np.ndarray, b: np.ndarray, k: int = 4) -> float:
    """Quadratic-weighted Cohen's kappa of grades 0..k-1 (as in tests/.../test_biomarkers)."""
    observed = np.zeros((k, k))
    np.add.at(observed, (a, b), 1)
    weights = (np.subtract.outer(np.arange(k), np.arange(k)) ** 2) / (k - 1) ** 2
    expected = np.outer(observed.sum(1), observed.sum(0)) / observed.sum()
    den = (weights * expected).sum()
    return float(1.0 - (weights * observed).sum() / den) if den else math.nan


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / s if s else 1.0


def soft_series_files(cohort: Path) -> list[tuple[str, str, list[Path]]]:
    """(patient, site, files) of each patient's soft-kernel axial series."""
    return [
        (row.patient_id, row.site, series_files(cohort, row.series_uid))
        for row in main_series(cohort).itertuples()
    ]


def evaluate_patient(cohort: Path, patient: str, files: list[Path]) -> tuple[dict, list[dict]]:
    """Dice per structure, level correctness and timing for one patient, and one row per
    level with the biomarkers measured from the built-in segmentation and their truth."""
    volume = load_volume(files)
    t0 = time.perf_counter()
    seg = segment(volume)
    seconds = time.perf_counter() - t0
    prow = pd.read_csv(cohort / "truth" / "patients.csv").set_index("patient_id").loc[patient]
    uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
    bm = measure_biomarkers(
        volume.hu, seg, uid, height_cm=float(prow["height_cm"]), contrast_tag=bool(prow["contrast"])
    )
    truth_dir = cohort / "truth" / patient
    bodies = load_nifti(truth_dir / "bodies.nii.gz", labels=True).hu.astype(np.uint8)
    tseg = load_nifti(truth_dir / "segmentation.nii.gz", labels=True).hu.astype(np.uint8)
    levels = pd.read_csv(cohort / "truth" / "levels.csv")
    in_scan = set(levels[(levels["patient_id"] == patient) & levels["in_scan"]]["level"])
    truth = levels[levels["patient_id"] == patient].set_index("level")
    shift = SITE_OFFSET_HU[str(prow["site"])] + (CONTRAST_HU if bool(prow["contrast"]) else 0.0)
    dz = volume.grid.spacing_zyx[0]
    level_rows = []
    for lv in bm.levels:
        t = truth.loc[lv.level]
        level_rows.append(
            {
                "patient": patient,
                "dz": dz,
                "level": lv.level,
                "in_scan": bool(t["in_scan"]),
                "present": lv.present,
                "cement": bool(t["cement"]),
                "hu": lv.trabecular_hu,
                "true_hu": float(prow[f"hu_{lv.level}"]) + shift,
                "grade": lv.genant_grade,
                "true_grade": int(t["genant_grade"]),
            }
        )
    row: dict = {"patient": patient, "dz": volume.grid.spacing_zyx[0], "seconds": seconds}
    correct = total = 0
    for lab, name in BODY_LEVELS.items():
        if name not in in_scan:
            continue
        truth = bodies == lab
        pred = seg.labels == lab
        d = _dice(pred, truth)
        row[f"body_{name}"] = d
        total += 1
        # correct: the named body overlaps its true body and no other name sits on it
        others = seg.labels[truth]
        wrong = any((others == o).sum() > 0.5 * truth.sum() for o in BODY_LEVELS if o != lab)
        correct += int(d >= 0.5 and not wrong)
    row["levels_correct"], row["levels_total"] = correct, total
    ks = np.nonzero((bodies > 0).any(axis=(1, 2)))[0]
    zr = slice(int(ks[0]), int(ks[-1]) + 1)
    for lab, tid in MUSCLE_TRUTH.items():
        row[MUSCLE_NAMES[lab]] = _dice(seg.labels[zr] == lab, tseg[zr] == tid)
    return row, level_rows


class BiomarkerScores(NamedTuple):
    """Biomarker accuracy over one set of levels (those in the scan that were found)."""

    levels: int  #: levels in the scan
    found: int  #: of which the segmenter found
    hu_levels: int  #: found levels without cement (the HU comparison's denominator)
    hu_within_10: int  #: of which measured within 10 HU of the truth
    hu_unmeasured: int
    hu_median_error: float  #: HU
    graded: int  #: levels given a Genant grade
    kappa: float  #: quadratic-weighted kappa against the true grade
    true_grade2: int  #: graded levels with true grade >= 2
    sensitivity_grade2: float  #: share of those graded >= 2 (NaN when none)
    grade2_on_grade0: int  #: grade >= 2 given to true grade 0
    true_grade0: int
    confusion: pd.DataFrame  #: counts, rows true grade 0-3, columns estimated 0-3


def biomarker_scores(level_rows: list[dict]) -> dict[str, BiomarkerScores]:
    """Scores per slice thickness (``"1 mm"``, ``"5 mm"``, ...) and ``"all"``, over the
    levels in the scan that the segmenter found (rows of :func:`evaluate_patient`)."""
    df = pd.DataFrame(level_rows)
    out = {}
    for label, part in [*((f"{dz:g} mm", g) for dz, g in df.groupby("dz")), ("all", df)]:
        scan = part[part["in_scan"]]
        found = scan[scan["present"]]
        hu = found[~found["cement"]]
        hu_ok = hu[np.isfinite(hu["hu"].astype(float))]
        err = (hu_ok["hu"] - hu_ok["true_hu"]).abs()
        graded = found.dropna(subset=["grade"])
        g = graded["grade"].astype(int).to_numpy()
        t = graded["true_grade"].astype(int).to_numpy()
        n2 = int((t >= 2).sum())
        confusion = pd.DataFrame(0, index=range(4), columns=range(4))
        np.add.at(confusion.values, (t, g), 1)
        out[label] = BiomarkerScores(
            levels=len(scan), found=len(found), hu_levels=len(hu),
            hu_within_10=int((err <= 10.0).sum()), hu_unmeasured=len(hu) - len(hu_ok),
            hu_median_error=float(err.median()) if len(err) else math.nan, graded=len(g),
            kappa=_weighted_kappa(t, g) if len(g) else math.nan, true_grade2=n2,
            sensitivity_grade2=float((g[t >= 2] >= 2).mean()) if n2 else math.nan,
            grade2_on_grade0=int((g[t == 0] >= 2).sum()), true_grade0=int((t == 0).sum()),
            confusion=confusion,
        )  # fmt: skip
    return out


def summarize_biomarkers(level_rows: list[dict]) -> str:
    """Trabecular HU within 10 HU, Genant kappa, sensitivity for grade >= 2 and the
    confusion matrix, per slice thickness and overall (:func:`biomarker_scores`)."""
    lines = []
    for label, s in biomarker_scores(level_rows).items():
        share = 100.0 * s.hu_within_10 / s.hu_levels if s.hu_levels else math.nan
        lines += [
            f"[{label}] biomarkers from the built-in segmentation: {s.levels} levels in scan, "
            f"{s.found} found",
            f"  trabecular HU within 10 HU: {s.hu_within_10}/{s.hu_levels} ({share:.1f} %, "
            f"target >= 95 %; {s.hu_unmeasured} not measured), median |error| "
            f"{s.hu_median_error:.1f} HU",
            f"  Genant grade: {s.graded} graded levels, {s.true_grade2} with true grade >= 2; "
            f"weighted kappa {s.kappa:.3f} (target >= 0.8), sensitivity grade >= 2 "
            f"{s.sensitivity_grade2:.3f} (target >= 0.9); grade >= 2 given to "
            f"{s.grade2_on_grade0}/{s.true_grade0} true grade 0",
            "  confusion (rows: true grade 0-3, columns: estimated 0-3):",
            *(f"    {k}: " + " ".join(f"{n:4d}" for n in row) for k, row in
              zip(range(4), s.confusion.to_numpy(), strict=True)),
        ]  # fmt: skip
    return "\n".join(lines)


def profiles_file(ratio: float, folder: Path, bmd_shift: float = 0.0) -> Path | None:
    """A copy of the shipped profiles with every ``prevalent_ratio`` multiplied by
    ``ratio`` and ``bmd_shift`` HU added to every ``bmd_shift_hu`` (None when neither
    changes anything: the shipped file is used)."""
    if ratio == 1.0 and bmd_shift == 0.0:
        return None
    path = folder / "profiles.toml"
    text = re.sub(
        r"prevalent_ratio = ([0-9.eE+-]+)",
        lambda m: f"prevalent_ratio = {float(m.group(1)) * ratio!r}",
        DEFAULT_PROFILES.read_text(),
    )
    text = re.sub(
        r"bmd_shift_hu = ([0-9.eE+-]+)",
        lambda m: f"bmd_shift_hu = {float(m.group(1)) + bmd_shift!r}",
        text,
    )
    path.write_text(text)
    return path


def summarize(rows: list[dict]) -> str:
    """Median / 5th percentile per structure, per slice thickness and overall."""
    df = pd.DataFrame(rows)
    body_cols = [c for c in df.columns if c.startswith("body_")]
    lines = []
    for label, part in [*((f"{dz:g} mm", g) for dz, g in df.groupby("dz")), ("all", df)]:
        bodies = part[body_cols].to_numpy().ravel()
        bodies = bodies[~np.isnan(bodies)]
        lines.append(f"[{label}] patients {len(part)}")
        lines.append(
            f"  body Dice (T12-L4, {bodies.size} vertebrae): median {np.median(bodies):.3f}, "
            f"p5 {np.percentile(bodies, 5):.3f}"
        )
        for c in body_cols:
            v = part[c].dropna()
            if len(v):
                lines.append(f"    {c}: median {v.median():.3f}, p5 {np.percentile(v, 5):.3f}")
        muscles = part[list(MUSCLE_NAMES.values())].to_numpy().ravel()
        lines.append(
            f"  muscle Dice (all labels): median {np.median(muscles):.3f}, "
            f"p5 {np.percentile(muscles, 5):.3f}"
        )
        for c in MUSCLE_NAMES.values():
            lines.append(
                f"    {c}: median {part[c].median():.3f}, p5 {np.percentile(part[c], 5):.3f}"
            )
        n_ok, n_all = int(part["levels_correct"].sum()), int(part["levels_total"].sum())
        lines.append(f"  level labels correct: {n_ok}/{n_all} ({100.0 * n_ok / n_all:.1f} %)")
        lines.append(
            f"  segment time per CT: median {part['seconds'].median():.3f} s, "
            f"max {part['seconds'].max():.3f} s"
        )
    return "\n".join(lines)


def run(
    patients: int,
    seed: int,
    resolution: str,
    root: Path,
    prevalent_ratio: float = 1.0,
    bmd_shift: float = 0.0,
) -> tuple[list[dict], list[dict]]:
    """Generate the external cohort into ``root`` and evaluate every patient."""
    cohort = root / "cohort"
    profiles = profiles_file(prevalent_ratio, root, bmd_shift)
    synthesize(
        SynthRequest(
            out=cohort,
            patients=patients,
            sites="ext_a,ext_b",
            seed=seed,
            resolution=resolution,
            workers=2,
            profiles_path=profiles,
        )
    )
    rows, level_rows = [], []
    for p, _, f in soft_series_files(cohort):
        row, lv = evaluate_patient(cohort, p, f)
        rows.append(row)
        level_rows.extend(lv)
    return rows, level_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=12)
    parser.add_argument("--seed", type=int, default=9001)
    parser.add_argument("--resolution", choices=("low", "full"), default="low")
    parser.add_argument("--prevalent-ratio", type=float, default=1.0)
    parser.add_argument("--bmd-shift", type=float, default=0.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows, level_rows = run(
            args.patients,
            args.seed,
            args.resolution,
            Path(tmp),
            args.prevalent_ratio,
            args.bmd_shift,
        )
    print(
        f"anatomy accuracy: {args.patients} external patients (ext_a 1 mm, ext_b 5 mm), "
        f"seed {args.seed}, resolution {args.resolution}, "
        f"prevalent_ratio x{args.prevalent_ratio:g}, bmd_shift {args.bmd_shift:+g} HU"
    )
    print(summarize(rows))
    print(summarize_biomarkers(level_rows))


if __name__ == "__main__":
    main()
