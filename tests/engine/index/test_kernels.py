"""The vendor kernel table: soft tissue, sharp, unknown."""

from __future__ import annotations

import pytest

from engine.index import classify_kernel

SOFT = [
    "B10f", "B20f", "B30f", "B31f", "B30s", "B41s", "B46f", "Br32", "Br36d", "Br40", "Br44",
    "Bf37", "I26f", "I30f", "I30f\\3", "I44f", "STANDARD", "SOFT", "DETAIL", "standard",
    "A", "B", "C", "UB", "FC01", "FC08", "FC13", "FC18", " FC08 ",
]  # fmt: skip
SHARP = [
    "B60f", "B70f", "B75f", "B80f", "Br59", "Br64", "Br76", "I70f", "I70f\\2", "BONE",
    "BONEPLUS", "LUNG", "EDGE", "D", "E", "YA", "YB", "YC", "YD", "L", "FC30", "FC35",
    "FC50", "FC81", "FC86",
]  # fmt: skip
UNKNOWN = ["", None, "B50f", "Br50", "FC20", "FC40", "FC90", "T20f", "KERNEL_X", "H", "Z9"]


@pytest.mark.parametrize("kernel", SOFT)
def test_soft_kernels_are_soft(kernel: str) -> None:
    assert classify_kernel(kernel) == "soft"


@pytest.mark.parametrize("kernel", SHARP)
def test_sharp_kernels_are_sharp(kernel: str) -> None:
    assert classify_kernel(kernel) == "sharp"


@pytest.mark.parametrize("kernel", UNKNOWN)
def test_other_kernels_are_unknown(kernel: str | None) -> None:
    assert classify_kernel(kernel) == "unknown"


def test_config_names_extend_and_override_the_table() -> None:
    assert classify_kernel("ABD_SOFT", soft_extra=["abd_soft"]) == "soft"
    assert classify_kernel("B30f", sharp_extra=["B30F"]) == "sharp"
    assert classify_kernel("BONE", soft_extra=["bone"]) == "soft"
