"""Benchmark: accuracy of the built-in segmenter against the generator's ground truth.

Generates external-site patients (``ext_a`` 1 mm, ``ext_b`` 5 mm slices) with a seed not
used in development, segments each soft-kernel series with ``engine.anatomy.segment`` and
compares with ``truth/PATIENT/bodies.nii.gz`` and ``segmentation.nii.gz``:

* body Dice per level (T12-L4, levels wholly in the scan), vs the body-only labels;
* muscle Dice per label (psoas vs ``iliopsoas_*``, paraspinal vs ``autochthon_*``), both
  restricted to the slices of the true T12-L4 bodies;
* level accuracy: a level in the scan is correct when the predicted body of that name
  overlaps the true one with Dice >= 0.5, and no other level name is given to it;
* time of ``segment`` per CT.

Figures are given per slice thickness and overall (median and 5th percentile).

Usage: python bench/anatomy_accuracy.py [--patients 12] [--seed 9001] [--resolution low]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom

from engine.anatomy.labels import BODY_LEVELS
from engine.anatomy.segment import segment
from engine.load import load_nifti, load_volume
from engine.synth.cohort import SynthRequest, synthesize

#: predicted id -> TotalSegmentator id in truth/segmentation.nii.gz
MUSCLE_TRUTH = {11: 88, 12: 89, 13: 86, 14: 87}
MUSCLE_NAMES = {11: "psoas_left", 12: "psoas_right", 13: "paraspinal_left", 14: "paraspinal_right"}


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / s if s else 1.0


def soft_series_files(cohort: Path) -> list[tuple[str, str, list[Path]]]:
    """(patient, site, files) of each patient's soft-kernel axial series."""
    series = pd.read_csv(cohort / "truth" / "series.csv")
    soft = series[(series["kind"] == "axial") & (series["series_number"] == 2)]
    out = []
    for row in soft.itertuples():
        folder = cohort / "archive" / row.folder
        files = [
            p
            for p in folder.iterdir()
            if p.is_file()
            and pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID == row.series_uid
        ]
        out.append((row.patient_id, row.site, files))
    return out


def evaluate_patient(cohort: Path, patient: str, files: list[Path]) -> dict:
    """Dice per structure, level correctness and timing for one patient."""
    volume = load_volume(files)
    t0 = time.perf_counter()
    seg = segment(volume)
    seconds = time.perf_counter() - t0
    truth_dir = cohort / "truth" / patient
    bodies = load_nifti(truth_dir / "bodies.nii.gz", labels=True).hu.astype(np.uint8)
    tseg = load_nifti(truth_dir / "segmentation.nii.gz", labels=True).hu.astype(np.uint8)
    levels = pd.read_csv(cohort / "truth" / "levels.csv")
    in_scan = set(levels[(levels["patient_id"] == patient) & levels["in_scan"]]["level"])
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
    return row


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


def run(patients: int, seed: int, resolution: str, root: Path) -> list[dict]:
    """Generate the external cohort into ``root`` and evaluate every patient."""
    cohort = root / "cohort"
    synthesize(
        SynthRequest(
            out=cohort,
            patients=patients,
            sites="ext_a,ext_b",
            seed=seed,
            resolution=resolution,
            workers=2,
        )
    )
    return [evaluate_patient(cohort, p, f) for p, _, f in soft_series_files(cohort)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=12)
    parser.add_argument("--seed", type=int, default=9001)
    parser.add_argument("--resolution", choices=("low", "full"), default="low")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = run(args.patients, args.seed, args.resolution, Path(tmp))
    print(
        f"anatomy accuracy: {args.patients} external patients (ext_a 1 mm, ext_b 5 mm), "
        f"seed {args.seed}, resolution {args.resolution}"
    )
    print(summarize(rows))


if __name__ == "__main__":
    main()
