"""Benchmark: time to generate one full-size synthetic patient vs a plain pydicom write.

For each patient the generator's own steps are timed (anatomy + render, kernel + noise,
DICOM write of the main axial series, the truth label maps), then the same volume is
written by a plain loop of minimal pydicom datasets: the baseline a DICOM writer cannot
beat. The ratio (generator / baseline) is the figure of merit; the goal is <= 3x with
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

from engine.synth import dicom_writer as dw
from engine.synth.anatomy import sample_anatomy, scan_grid
from engine.synth.cohort import _patient_rng, _study_info, _write_nifti
from engine.synth.phantom import render
from engine.synth.population import simulate_population
from engine.synth.profiles import load_profiles
from engine.synth.scanner import reconstruct


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
    parser.add_argument("--patients", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    profile = load_profiles()[args.site]
    if profile.transfer_syntax in ("JPEG2000Lossless", "RLELossless"):
        profile = dataclasses.replace(profile, transfer_syntax="ExplicitVRLittleEndian")
    population = simulate_population(args.patients, {args.site: 1.0}, {args.site: profile},
                                     args.seed)  # fmt: skip
    ratios, rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, patient in enumerate(population.to_dict("records")):
            root = Path(tmp) / f"p{i}"
            t = {}
            t0 = time.perf_counter()
            rng = _patient_rng(args.seed, patient["patient_id"], 0)
            anatomy = sample_anatomy(patient, rng)
            grid = scan_grid(anatomy, profile, "full", rng)
            phantom = render(anatomy, grid)
            t["render"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            soft = reconstruct(phantom.hu, grid, kernel="soft", noise_sd=profile.noise_sd_hu,
                               hu_offset=profile.hu_offset,
                               rng=_patient_rng(args.seed, patient["patient_id"], 1))  # fmt: skip
            t["kernel+noise"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            dw.write_axial_series(root / "archive", _study_info(patient, args.seed), profile,
                                  grid, soft, series_number=2, kernel=profile.kernel_soft,
                                  description="bench", recon_circle=True)  # fmt: skip
            t["dicom write"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            (root / "truth").mkdir(parents=True)
            _write_nifti(root / "truth" / "segmentation.nii.gz", phantom.labels, grid)
            _write_nifti(root / "truth" / "bodies.nii.gz", phantom.bodies, grid)
            t["truth nifti"] = time.perf_counter() - t0
            stored = dw.hu_to_stored(soft, profile).astype(np.int16)
            (root / "plain").mkdir()
            t0 = time.perf_counter()
            _plain_write(root / "plain", stored, grid.spacing_zyx)
            baseline = time.perf_counter() - t0
            series = t["render"] + t["kernel+noise"] + t["dicom write"]
            ratios.append(series / baseline)
            rows.append((grid.shape_zyx, t, series, baseline))

    print(f"synth_speed: site {args.site} ({profile.slice_thickness_mm:g} mm slices), "
          f"full resolution, {args.patients} patients, uncompressed")  # fmt: skip
    for shape, t, series, baseline in rows:
        steps = ", ".join(f"{k} {v:.2f} s" for k, v in t.items())
        print(f"  volume {shape[2]}x{shape[1]}x{shape[0]}: {steps}")
        print(f"    generator (render + kernel + write) {series:.2f} s; plain pydicom write "
              f"{baseline:.2f} s; ratio {series / baseline:.2f}x; with truth NIfTI "
              f"{(series + t['truth nifti']) / baseline:.2f}x")  # fmt: skip
    print(f"median ratio generator / plain pydicom write: {statistics.median(ratios):.2f}x "
          "(goal <= 3x)")


if __name__ == "__main__":
    main()
