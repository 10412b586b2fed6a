"""The ``[clinical]`` configuration section as a typed, checked record."""

from __future__ import annotations

from dataclasses import dataclass

from engine.config import Config
from engine.errors import VfriskError

__all__ = ["FRAX_SCALES", "INDEX_SCANS", "ClinicalSettings", "settings_from_config"]

FRAX_SCALES = ("percent", "fraction")
INDEX_SCANS = ("earliest", "latest")


@dataclass(frozen=True)
class ClinicalSettings:
    """How clinical files are read and linked (``engine/default_config.toml``, ``[clinical]``).

    Parameters
    ----------
    frax_scale : str
        ``percent`` (FRAX probabilities 0-100, as the generator writes) or ``fraction``
        (0-1, multiplied by 100 on import). Stored values are always percent.
    index_scan : str
        Which selected scan of a patient with several is the index scan: ``earliest`` or
        ``latest`` StudyDate. Follow-up is counted from it.
    scan_date_tolerance_days : int
        Days by which the clinical ``scan_date`` may differ from the index scan's
        StudyDate before it is reported (a warning, not an error).
    bmi_tolerance : float
        kg/m2 by which ``bmi`` may differ from weight / height^2 before a warning.
    max_problems : int
        Problems printed in a validation report (the total is always given).
    """

    frax_scale: str = "percent"
    index_scan: str = "earliest"
    scan_date_tolerance_days: int = 30
    bmi_tolerance: float = 1.0
    max_problems: int = 20

    def __post_init__(self) -> None:
        checks = (
            ("frax_scale", self.frax_scale in FRAX_SCALES, f"one of {list(FRAX_SCALES)}"),
            ("index_scan", self.index_scan in INDEX_SCANS, f"one of {list(INDEX_SCANS)}"),
            ("scan_date_tolerance_days", self.scan_date_tolerance_days >= 0, ">= 0"),
            ("bmi_tolerance", self.bmi_tolerance > 0, "> 0"),
            ("max_problems", self.max_problems >= 1, ">= 1"),
        )
        for key, ok, expected in checks:
            if not ok:
                raise VfriskError(
                    "bad_config",
                    f"[clinical] {key} = {getattr(self, key)!r} must be {expected}; fix the "
                    "configuration file",
                )


def settings_from_config(config: Config) -> ClinicalSettings:
    """The ``[clinical]`` section of a merged configuration, checked."""
    section = config["clinical"]
    return ClinicalSettings(
        frax_scale=section["frax_scale"],
        index_scan=section["index_scan"],
        scan_date_tolerance_days=int(section["scan_date_tolerance_days"]),
        bmi_tolerance=float(section["bmi_tolerance"]),
        max_problems=int(section["max_problems"]),
    )
