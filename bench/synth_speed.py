"""Benchmark: time to generate one full-size synthetic patient vs a plain pydicom write.

For each patient the generator's own steps are timed (anatomy + render, kernel + noise,
DICOM write of the main axial series, then scout, SR and the truth label maps), then the
same pixels are written by a plain loop of minimal pydicom datasets: the baseline a DICOM
writer cannot beat. Bench patients get no second (bone-kernel) reconstruction.
The ratio (generator / baseline) is the figure of merit; the goal is <= 3x with
compression excluded, so compressed sites are timed with Explicit VR Little Endian.
Absolute seconds depend on the machine; ratios from the same run do not.

Usage: python bench/synth_speed.py [--site ext_a] [--patients 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from engine.synth.cohort import generate_patient
from engine.synth.population import simulate_population
from engine.synth.profiles import load_profiles


def _plain_write(folder: Path, stored: np.ndarray, spacing: tuple[float, float, float]) -> None:
    """Baseline: the minimal pydicom loop most scripts use to write a CT volume."""
    series_uid = generate_uid()
    for k in range(stored.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID = series_uid
        ds.Modality = "CT"
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [0, 0, k * spacing[0]]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [spacing[1], spacing[2]]
        ds.Rows, ds.Columns = stored.shape[1:]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = stored[k].tobytes()
        pydicom.dcmwrite(folder / f"{k:04d}.dcm", ds, enforce_file_format=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", default="ext_a")
    parser.add_argument("--patients", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    profile = load_profiles()[args.site]
    if profile.transfer_syntax in ("JPEG2000Lossless", "RLELossless"):
        profile = dataclasses.replace(profile, transfer_syntax="ExplicitVRLittleEndian")
    # One extra patient first, not counted: the generator makes many patients per worker
    # process, so the first one's fresh-memory page faults are amortized in real use.
    population = simulate_population(args.patients + 1, {args.site: 1.0}, {args.site: profile},
                                     args.seed)  # fmt: skip
    # The same volume for generator and baseline: one soft-kernel series per patient.
    population["bone_recon"] = population["derived"] = False
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, patient in enumerate(population.to_dict("records")):
            root = Path(tmp) / f"p{i}"
            (root / "archive").mkdir(parents=True)
            out = generate_patient(patient, profile, root / "archive", root / "truth",
                                   args.seed, "full")  # fmt: skip
            main_series = next(r for r in out.series if r["kind"] == "axial")
            files = sorted((root / "archive" / main_series["folder"]).iterdir())
            datasets = [pydicom.dcmread(f) for f in files]
            stored = np.stack([ds.pixel_array for ds in datasets]).astype(np.int16)
            spacing = (float(datasets[0].SliceThickness), *map(float, datasets[0].PixelSpacing))
            (root / "plain").mkdir()
            t0 = time.perf_counter()
            _plain_write(root / "plain", stored, spacing)
            if i > 0:
                rows.append((stored.shape, out.seconds, time.perf_counter() - t0))

    print(f"synth_speed: site {args.site} ({profile.slice_thickness_mm:g} mm slices), "
          f"full resolution, {args.patients} patients after 1 warm-up, uncompressed")  # fmt: skip
    series_ratios, patient_ratios = [], []
    for shape, seconds, baseline in rows:
        series = seconds["render"] + seconds["reconstruct"] + seconds["write"]
        total = sum(seconds.values())
        series_ratios.append(series / baseline)
        patient_ratios.append(total / baseline)
        steps = ", ".join(f"{k} {v:.2f} s" for k, v in seconds.items())
        print(f"  volume {shape[2]}x{shape[1]}x{shape[0]}: {steps}")
        print(f"    plain pydicom write {baseline:.2f} s; main series (render + reconstruct + "
              f"write) {series:.2f} s = {series / baseline:.1f}x; whole patient (+ scout, "
              f"SR, truth NIfTI) {total:.2f} s = {total / baseline:.1f}x")  # fmt: skip
    print(f"median ratio to a plain pydicom write: main series "
          f"{statistics.median(series_ratios):.1f}x (goal <= 3x), whole patient "
          f"{statistics.median(patient_ratios):.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
