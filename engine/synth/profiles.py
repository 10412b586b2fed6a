"""Site profiles of the synthetic cohort: scanner settings and population mix per site.

Profiles live in ``sample_data/site_profiles.toml`` (one ``[sites.NAME]`` table each); a
``--sites`` spec such as ``dev:0.6,ext_a:0.2,ext_b:0.2`` picks sites by name with weights.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from engine.errors import VfriskError

__all__ = [
    "DEFAULT_PROFILES",
    "DEFAULT_SITES_SPEC",
    "SiteProfile",
    "load_profiles",
    "parse_sites_spec",
]

DEFAULT_PROFILES = Path(__file__).resolve().parents[2] / "sample_data" / "site_profiles.toml"
DEFAULT_SITES_SPEC = "dev:0.6,ext_a:0.2,ext_b:0.2"

_TRANSFER_SYNTAXES = (
    "ExplicitVRLittleEndian",
    "ImplicitVRLittleEndian",
    "JPEG2000Lossless",
    "RLELossless",
)
_LAYOUTS = ("patient_study_series", "dated_accession", "flat_uid")


@dataclass(frozen=True)
class SiteProfile:
    """One synthetic site: scanner, archive habits and population. Units in field names."""

    name: str
    role: str
    institution: str
    manufacturer: str
    model: str
    kernel_soft: str
    kernel_bone: str
    slice_thickness_mm: float
    pixel_spacing_mm: tuple[float, float]
    noise_sd_hu: float
    bone_kernel_noise_sd_hu: float
    hu_offset: float
    pixel_representation: int
    rescale_intercept: float
    transfer_syntax: str
    instance_order: str
    layout: str
    p_bone_recon: float
    p_contrast: float
    p_derived: float
    p_miss_t12: float
    p_miss_l4: float
    age_mean: float
    age_sd: float
    female_fraction: float
    bmd_shift_hu: float
    fracture_hazard_ratio: float
    prevalent_ratio: float
    study_year_range: tuple[int, int]
    pixel_padding_value: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.role not in ("development", "external"):
            problems.append(f"role must be 'development' or 'external', got {self.role!r}")
        if self.transfer_syntax not in _TRANSFER_SYNTAXES:
            problems.append(f"transfer_syntax must be one of {_TRANSFER_SYNTAXES}")
        if self.layout not in _LAYOUTS:
            problems.append(f"layout must be one of {_LAYOUTS}")
        if self.instance_order not in ("head_first", "feet_first"):
            problems.append("instance_order must be 'head_first' or 'feet_first'")
        if self.pixel_representation not in (0, 1):
            problems.append("pixel_representation must be 0 (unsigned) or 1 (signed)")
        if not 0.3 <= self.slice_thickness_mm <= 10:
            problems.append("slice_thickness_mm must lie in [0.3, 10]")
        for name in (
            "p_bone_recon",
            "p_contrast",
            "p_derived",
            "p_miss_t12",
            "p_miss_l4",
            "female_fraction",
        ):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name} must lie in [0, 1]")
        if problems:
            raise VfriskError("bad_profile", f"site profile {self.name!r}: " + "; ".join(problems))


def load_profiles(path: Path | None = None) -> dict[str, SiteProfile]:
    """Read site profiles from a TOML file (default: the shipped ``site_profiles.toml``)."""
    path = Path(path) if path is not None else DEFAULT_PROFILES
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise VfriskError("bad_profile", f"site profile file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise VfriskError("bad_profile", f"{path} is not valid TOML: {exc}") from None
    known = {f.name for f in fields(SiteProfile)}
    profiles = {}
    for name, table in raw.get("sites", {}).items():
        unknown = set(table) - known
        if unknown:
            raise VfriskError(
                "bad_profile", f"{path}: site {name!r} has unknown keys {sorted(unknown)}"
            )
        missing = {f.name for f in fields(SiteProfile) if f.default is not None} - set(table)
        missing -= {"name"}
        if missing:
            raise VfriskError("bad_profile", f"{path}: site {name!r} lacks keys {sorted(missing)}")
        values = dict(table)
        values["pixel_spacing_mm"] = tuple(values["pixel_spacing_mm"])
        values["study_year_range"] = tuple(values["study_year_range"])
        profiles[name] = SiteProfile(name=name, **values)
    if not profiles:
        raise VfriskError("bad_profile", f"{path} defines no [sites.NAME] tables")
    return profiles


def parse_sites_spec(spec: str, profiles: dict[str, SiteProfile]) -> dict[str, float]:
    """Parse ``NAME[:WEIGHT],...`` into normalized weights per known site name.

    A name without weight gets weight 1. Raises ``VfriskError('bad_sites_spec')`` naming
    the offending part.
    """
    weights: dict[str, float] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, _, weight = part.partition(":")
        name = name.strip()
        if name not in profiles:
            raise VfriskError(
                "bad_sites_spec",
                f"--sites: unknown site {name!r}; known sites are {sorted(profiles)}",
            )
        try:
            w = float(weight) if weight else 1.0
        except ValueError:
            raise VfriskError(
                "bad_sites_spec", f"--sites: weight {weight!r} of {name!r} is not a number"
            ) from None
        if w <= 0:
            raise VfriskError("bad_sites_spec", f"--sites: weight of {name!r} must be > 0")
        weights[name] = weights.get(name, 0.0) + w
    if not weights:
        raise VfriskError("bad_sites_spec", f"--sites: no site named in {spec!r}")
    total = sum(weights.values())
    return {k: v / total for k, v in weights.items()}
