"""Which series can be scored (eligibility) and which one per study is scored (selection).

The rules and their thresholds come from ``[eligibility]`` in the configuration
(``engine/default_config.toml`` documents each key; a small user file can override any).
A series is checked in two steps, and every failed rule is stated in ``reason`` in plain
words; ``reason_code`` is the first failed rule in this order:

1. What the series is: ``no_image`` (a report or other non-image object, e.g. an SR),
   ``not_ct`` (modality not in ``modalities``), ``secondary_capture`` (a screenshot such
   as the dose page: Secondary Capture SOP class or ImageType SCREEN SAVE),
   ``localizer`` (ImageType LOCALIZER: the scout), ``derived`` (ImageType DERIVED, or
   REFORMATTED / MPR / MIP / PROJECTION: not an original reconstruction). When any of
   these fails, the geometry is not judged.
2. Its geometry: ``not_axial`` (plane normal more than ``loading.max_plane_angle_deg`` from the
   body axis, or no orientation), ``mixed_sizes`` (slices differ in size, pixel spacing or
   orientation), ``too_few_slices`` (< ``min_slices``), ``short_coverage`` (<
   ``min_z_extent_mm`` between the outermost slices), ``thick_slices`` (>
   ``max_slice_thickness_mm``), ``slice_gap`` (neighbouring slices more than
   ``loading.max_gap_factor`` x the slice spacing apart: smaller gaps are fine, the
   loader interpolates them).

Selection: among the eligible series of a study exactly one is selected, by, in order,
(1) kernel class soft before unknown before sharp (``engine.index.kernels``), (2) thinner
slices, (3) longer z coverage, (4) lower SeriesNumber, (5) SeriesInstanceUID (so the choice
is deterministic). The others get ``not_preferred`` with the chosen series and the first
criterion that decided. A study without an eligible series has none selected.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from engine.config import Config
from engine.errors import VfriskError
from engine.index.kernels import classify_kernel
from engine.index.records import SeriesRecord

__all__ = ["Rules", "decide", "decide_all", "rules_from_config", "select"]

_SC_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.7",
    "1.2.840.10008.5.1.4.1.1.7.1",
    "1.2.840.10008.5.1.4.1.1.7.2",
    "1.2.840.10008.5.1.4.1.1.7.3",
    "1.2.840.10008.5.1.4.1.1.7.4",
}
_DERIVED_WORDS = ("REFORMATTED", "MPR", "MIP", "PROJECTION IMAGE", "CURVED")
_KERNEL_RANK = {"soft": 0, "unknown": 1, "sharp": 2}


@dataclass(frozen=True)
class Rules:
    """Eligibility thresholds (mm, degrees) and kernel name lists; see the module doc."""

    modalities: tuple[str, ...] = ("CT",)
    min_slices: int = 20
    min_z_extent_mm: float = 100.0
    max_slice_thickness_mm: float = 5.0
    max_gap_factor: float = 2.5
    max_plane_angle_deg: float = 30.0
    soft_kernels: tuple[str, ...] = ()
    sharp_kernels: tuple[str, ...] = ()


def rules_from_config(config: Config) -> Rules:
    """Build ``Rules`` from the ``[eligibility]`` and ``[loading]`` config tables.

    The gap and plane-angle limits are the loader's own (``[loading]``), so a series the
    index marks eligible is one the loader accepts.
    """
    section, loading = config["eligibility"], config["loading"]
    rules = Rules(
        modalities=tuple(str(m).upper() for m in section["modalities"]),
        min_slices=int(section["min_slices"]),
        min_z_extent_mm=float(section["min_z_extent_mm"]),
        max_slice_thickness_mm=float(section["max_slice_thickness_mm"]),
        max_gap_factor=float(loading["max_gap_factor"]),
        max_plane_angle_deg=float(loading["max_plane_angle_deg"]),
        soft_kernels=tuple(str(k) for k in section["soft_kernels"] if str(k).strip()),
        sharp_kernels=tuple(str(k) for k in section["sharp_kernels"] if str(k).strip()),
    )
    if rules.min_slices < 1 or rules.max_slice_thickness_mm <= 0 or rules.max_gap_factor < 1:
        raise VfriskError(
            "bad_config",
            "eligibility.min_slices must be >= 1, eligibility.max_slice_thickness_mm > 0 and "
            "loading.max_gap_factor >= 1",
        )
    return rules


def _kind_failures(s: SeriesRecord, rules: Rules) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    words = set(s.image_type.split("\\"))
    if not s.is_image:
        what = s.sop_class_uid
        try:
            from pydicom.uid import UID

            what = UID(s.sop_class_uid).name
        except Exception:  # noqa: BLE001 - any odd UID: show it as is
            pass
        return [
            ("no_image", f"it is a {what or 'non-image'} object (a report or record), not images")
        ]
    if s.modality not in rules.modalities:
        out.append(
            (
                "not_ct",
                f"its modality is {s.modality or 'missing'}, not {' or '.join(rules.modalities)}",
            )
        )
    if s.sop_class_uid in _SC_CLASSES or "SCREEN SAVE" in words or "SECONDARY CAPTURE" in words:
        out.append(
            (
                "secondary_capture",
                "it is a secondary capture (a screenshot such as the dose page), not CT slices",
            )
        )
    elif "LOCALIZER" in words:
        out.append(("localizer", "it is the scout (localizer) image, not an axial stack"))
    elif "DERIVED" in words or any(w in s.image_type for w in _DERIVED_WORDS):
        out.append(
            (
                "derived",
                f"it is derived or reformatted (image type {s.image_type}), "
                "not an original reconstruction",
            )
        )
    return out


def _geometry_failures(s: SeriesRecord, rules: Rules) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if s.axial_angle_deg is None:
        out.append(("not_axial", "its images carry no orientation, so no stack can be built"))
    elif s.axial_angle_deg > rules.max_plane_angle_deg:
        out.append(
            (
                "not_axial",
                f"its images are {s.orientation}, "
                f"{s.axial_angle_deg:.0f} degrees from axial (at most "
                f"{rules.max_plane_angle_deg:g} allowed)",
            )
        )
    if s.mixed_sizes:
        out.append(("mixed_sizes", f"its slices disagree in {s.mixed_sizes}"))
    if s.n_slices < rules.min_slices:
        out.append(
            (
                "too_few_slices",
                f"it has {s.n_slices} slices, at least "
                f"{rules.min_slices} are needed to cover T12-L4",
            )
        )
    extent = s.z_extent_mm or 0.0
    if extent < rules.min_z_extent_mm:
        out.append(
            (
                "short_coverage",
                f"it covers {extent:.0f} mm along the body, at least "
                f"{rules.min_z_extent_mm:g} mm are needed for T12-L4",
            )
        )
    if s.slice_thickness is None:
        out.append(("thick_slices", "its slice thickness is not recorded"))
    elif s.slice_thickness > rules.max_slice_thickness_mm:
        out.append(
            (
                "thick_slices",
                f"its slices are {s.slice_thickness:g} mm thick, at most "
                f"{rules.max_slice_thickness_mm:g} mm allowed",
            )
        )
    if (
        s.max_gap_mm is not None
        and s.slice_spacing_mm
        and s.max_gap_mm > rules.max_gap_factor * s.slice_spacing_mm
    ):
        out.append(
            (
                "slice_gap",
                f"slices are missing: neighbours up to {s.max_gap_mm:.1f} mm apart, at most "
                f"{rules.max_gap_factor:g} x the {s.slice_spacing_mm:g} mm slice spacing can "
                "be filled in",
            )
        )
    return out


def decide(series: SeriesRecord, rules: Rules) -> SeriesRecord:
    """Kernel class and eligibility of one series (``selected`` is left False)."""
    kernel_class = classify_kernel(series.kernel, rules.soft_kernels, rules.sharp_kernels)
    failures = _kind_failures(series, rules) or _geometry_failures(series, rules)
    if failures:
        text = "Not eligible: " + "; ".join(sentence for _, sentence in failures) + "."
        return replace(
            series,
            kernel_class=kernel_class,
            eligible=False,
            selected=False,
            reason_code=failures[0][0],
            reason=text,
        )
    return replace(
        series,
        kernel_class=kernel_class,
        eligible=True,
        selected=False,
        reason_code="not_preferred",
        reason="Eligible; not yet compared.",
    )


def _key(s: SeriesRecord) -> tuple:
    return (
        _KERNEL_RANK[s.kernel_class],
        s.slice_thickness if s.slice_thickness is not None else float("inf"),
        -(s.z_extent_mm or 0.0),
        s.series_number if s.series_number is not None else 10**9,
        s.series_uid,
    )


def _name(s: SeriesRecord) -> str:
    number = f"series {s.series_number}" if s.series_number is not None else "series"
    desc = f" '{s.series_description}'" if s.series_description else ""
    return f"{number}{desc} ({s.series_uid})"


def _why(chosen: SeriesRecord, other: SeriesRecord) -> str:
    a, b = _key(chosen), _key(other)
    if a[0] != b[0]:
        return (
            f"its kernel {chosen.kernel or '(none)'} is {chosen.kernel_class} and this one's "
            f"{other.kernel or '(none)'} is {other.kernel_class}: a soft-tissue kernel is "
            "preferred"
        )
    if a[1] != b[1]:
        return (
            f"its slices are thinner ({chosen.slice_thickness:g} vs {other.slice_thickness:g} mm)"
        )
    if a[2] != b[2]:
        return (
            f"it covers more ({chosen.z_extent_mm:.0f} vs {other.z_extent_mm or 0:.0f} mm "
            "along the body)"
        )
    if a[3] != b[3]:
        return f"it has the lower series number ({chosen.series_number} vs {other.series_number})"
    return "the two are equal by every criterion and the chosen one sorts first by UID"


def select(study_series: Sequence[SeriesRecord]) -> list[SeriesRecord]:
    """Select one eligible series of one study (already ``decide``d); others explain why not."""
    eligible = sorted((s for s in study_series if s.eligible), key=_key)
    if not eligible:
        return list(study_series)
    chosen = eligible[0]
    out = []
    for s in study_series:
        if s.series_uid == chosen.series_uid:
            out.append(replace(s, selected=True, reason_code=None, reason=None))
        elif s.eligible:
            text = (
                f"Eligible, but {_name(chosen)} of the same study was chosen because "
                f"{_why(chosen, s)}."
            )
            out.append(replace(s, selected=False, reason_code="not_preferred", reason=text))
        else:
            out.append(s)
    return out


def decide_all(series: Iterable[SeriesRecord], rules: Rules) -> list[SeriesRecord]:
    """Eligibility and selection for whole studies (pass every series of each study)."""
    by_study: dict[str, list[SeriesRecord]] = {}
    for s in series:
        by_study.setdefault(s.study_uid, []).append(decide(s, rules))
    return [s for group in by_study.values() for s in select(group)]
