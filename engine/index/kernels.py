"""Reconstruction kernel classification across vendors: soft tissue, sharp, or unknown.

Vendors name their kernels differently; this is the one place that knows them. A soft
(smooth, body/abdomen) kernel is what the bone-density and muscle measurements of Kong et
al. were made on, so it is preferred when a study holds several reconstructions.

=================  ==============================  ====================================
vendor             soft tissue                     sharp (bone / lung / edge)
=================  ==============================  ====================================
Siemens            B10f-B46f, Br32-Br44 (also      B60f-B80f, Br59-Br76 (also Bl, Hr,
                   Bf, Bv, Qr of the same          Qr of the same numbers), I70f-I80f
                   numbers), I26f-I44f
                   (iterative, e.g. ``I30f\\3``)
GE                 STANDARD, SOFT, DETAIL          BONE, BONEPLUS, LUNG, EDGE, CHEST
Philips            A, B, C (also UA, UB, UC)       D, E, YA, YB, YC, YD, L
Canon / Toshiba    FC01-FC18                       FC30-FC35, FC50-FC86
anything else      -> unknown
=================  ==============================  ====================================

Numbers between the soft and sharp ranges (Siemens B50f, Canon FC20) are ``unknown``:
medium-sharp kernels are neither preferred nor refused. The names are matched without
regard to case, after dropping a Siemens iterative-strength suffix (``I30f\\3`` -> ``I30f``)
and surrounding spaces. Site-specific names the table does not know can be added (or the
table overridden) with ``[eligibility] soft_kernels`` / ``sharp_kernels`` in the config.
"""

from __future__ import annotations

import re
from collections.abc import Collection

__all__ = ["KERNEL_CLASSES", "classify_kernel"]

KERNEL_CLASSES = ("soft", "sharp", "unknown")

_GE_SOFT = {"STANDARD", "STND", "SOFT", "DETAIL"}
_GE_SHARP = {"BONE", "BONEPLUS", "BONE+", "LUNG", "EDGE", "CHEST"}
_PHILIPS_SOFT = {"A", "B", "C", "UA", "UB", "UC"}
_PHILIPS_SHARP = {"D", "E", "YA", "YB", "YC", "YD", "L"}

# (regex on the upper-cased kernel, soft range, sharp range) of kernel numbers, inclusive.
_NUMBERED: tuple[tuple[re.Pattern[str], tuple[int, int], tuple[int, int]], ...] = (
    (re.compile(r"^B(\d{2})[A-Z]?$"), (10, 46), (60, 80)),  # Siemens classic: B30f, B70s
    (re.compile(r"^(?:BR|BF|BV|QR|BL|HR)(\d{2})[A-Z]?$"), (32, 44), (59, 76)),  # Siemens ADMIRE era
    (re.compile(r"^I(\d{2})[A-Z]?$"), (26, 44), (70, 80)),  # Siemens iterative (SAFIRE)
    (re.compile(r"^FC(\d{2})"), (1, 18), (30, 35)),  # Canon / Toshiba (FC50-FC86 below)
)


def _normalize(kernel: str) -> str:
    return kernel.split("\\")[0].strip().upper()


def classify_kernel(
    kernel: str | None,
    soft_extra: Collection[str] = (),
    sharp_extra: Collection[str] = (),
) -> str:
    """Classify a ConvolutionKernel value as ``'soft'``, ``'sharp'`` or ``'unknown'``.

    Parameters
    ----------
    kernel : str or None
        The ConvolutionKernel (0018,1210) value; multi-valued kernels are joined by ``\\``
        and only the first value counts.
    soft_extra, sharp_extra : collection of str
        Names from the configuration, matched (case-insensitively, exact) before the
        built-in table: they add to it or override it.

    Returns
    -------
    str
        One of ``KERNEL_CLASSES``.
    """
    if not kernel:
        return "unknown"
    name = _normalize(kernel)
    if name in {_normalize(k) for k in soft_extra}:
        return "soft"
    if name in {_normalize(k) for k in sharp_extra}:
        return "sharp"
    if name in _GE_SOFT or name in _PHILIPS_SOFT:
        return "soft"
    if name in _GE_SHARP or name in _PHILIPS_SHARP:
        return "sharp"
    for pattern, soft, sharp in _NUMBERED:
        match = pattern.match(name)
        if match:
            number = int(match.group(1))
            if soft[0] <= number <= soft[1]:
                return "soft"
            if sharp[0] <= number <= sharp[1]:
                return "sharp"
            if name.startswith("FC") and 50 <= number <= 86:
                return "sharp"
            return "unknown"
    return "unknown"
