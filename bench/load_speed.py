"""Benchmark: ``load_series`` vs SimpleITK's ImageSeriesReader on the same full-size series.

For each site one full-size synthetic patient is generated (soft-kernel axial series only).
Compression is excluded from the main comparison: JPEG 2000 sites are written as Explicit
VR Little Endian, and with ``--compressed`` the site's own transfer syntax is timed on a
second copy and reported separately. Each reader loads the same files, best of 5; the ratio
``load_series / SimpleITK`` is the figure of merit (goal <= 1.3x). SimpleITK gets the file
names already sorted (``GetGDCMSeriesFileNames``, not timed); ``load_series`` gets them
unsorted and sorts them itself. Absolute seconds depend on the machine; ratios from the
same run do not.

Usage: python bench/load_speed.py [--sites dev,ext_a,ext_b] [--seed 0] [--compressed]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import SimpleITK as sitk

from engine.load import load_series
from engine.synth.cohort import generate_patient
from engine.synth.population import simulate_population
from engine.synth.profiles import SiteProfile, load_profiles


def _best_of(n: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _series_files(profile: SiteProfile, root: Path, seed: int) -> tuple[list[Path], str]:
    population = simulate_population(1, {profile.name: 1.0}, {profile.name: profile}, seed)
    population["bone_recon"] = population["derived"] = False
    patient = population.to_dict("records")[0]
    (root / "archive").mkdir(parents=True)
    out = generate_patient(patient, profile, root / "archive", root / "truth", seed, "full")
    main = next(r for r in out.series if r["kind"] == "axial")
    folder = root / "archive" / main["folder"]
    uid = main["series_uid"]
    return [p for p in folder.iterdir() if p.is_file() and _series_uid(p) == uid], uid


def _series_uid(path: Path) -> str:
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)


def _compare(label: str, files: list[Path], series_uid: str) -> float:
    names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(files[0].parent), series_uid)
    assert len(names) == len(files), "SimpleITK must read the same series"

    def read_sitk() -> object:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(names)
        return sitk.GetArrayViewFromImage(reader.Execute())

    ours = _best_of(5, lambda: load_series(files))
    theirs = _best_of(5, read_sitk)
    shape = load_series(files).hu.shape
    print(f"  {label}: {shape[2]}x{shape[1]}x{shape[0]} voxels, {len(files)} files: "
          f"load_series {ours:.3f} s, SimpleITK {theirs:.3f} s, "
          f"ratio {ours / theirs:.2f}x")  # fmt: skip
    return ours / theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", default="dev,ext_a,ext_b")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compressed", action="store_true")
    args = parser.parse_args()
    profiles = load_profiles()
    print("load_speed: full resolution, one patient per site, best of 5")
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for site in args.sites.split(","):
            profile = profiles[site]
            compressed = profile.transfer_syntax in ("JPEG2000Lossless", "RLELossless")
            plain = dataclasses.replace(profile, transfer_syntax="ExplicitVRLittleEndian")
            files, uid = _series_files(plain if compressed else profile, Path(tmp) / site,
                                       args.seed)  # fmt: skip
            syntax = "ExplicitVRLittleEndian" if compressed else profile.transfer_syntax
            ratios.append(_compare(f"{site} ({syntax})", files, uid))
            if compressed and args.compressed:
                files, uid = _series_files(profile, Path(tmp) / f"{site}-c", args.seed)
                _compare(f"{site} ({profile.transfer_syntax}, reported separately)", files, uid)
    print(f"worst ratio load_series / SimpleITK, uncompressed: {max(ratios):.2f}x (goal <= 1.3x)")


if __name__ == "__main__":
    main()
