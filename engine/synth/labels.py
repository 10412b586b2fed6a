"""Label ids of the synthetic phantom.

``LABELS`` uses the class ids of TotalSegmentator v2's ``total`` task, so that phantom
label maps can stand in for TotalSegmentator masks (``--masks``) in tests. ``BODY_LABELS``
numbers the vertebral bodies of the model levels (posterior elements excluded), as the
2D U-Net stage of Kong et al. (2025) keeps them.
"""

from __future__ import annotations

__all__ = ["BODY_LABELS", "LABELS", "LEVELS", "LEVEL_LABEL", "MODEL_LEVELS"]

LABELS: dict[int, str] = {
    25: "sacrum",
    27: "vertebrae_L5",
    28: "vertebrae_L4",
    29: "vertebrae_L3",
    30: "vertebrae_L2",
    31: "vertebrae_L1",
    32: "vertebrae_T12",
    33: "vertebrae_T11",
    34: "vertebrae_T10",
    2: "kidney_right",
    3: "kidney_left",
    5: "liver",
    52: "aorta",
    79: "spinal_cord",
    77: "hip_left",
    78: "hip_right",
    86: "autochthon_left",
    87: "autochthon_right",
    88: "iliopsoas_left",
    89: "iliopsoas_right",
    101: "rib_left_10",
    102: "rib_left_11",
    103: "rib_left_12",
    113: "rib_right_10",
    114: "rib_right_11",
    115: "rib_right_12",
}

#: Vertebral bodies of the model levels (T12-L4), posterior elements excluded.
BODY_LABELS: dict[int, str] = {1: "T12", 2: "L1", 3: "L2", 4: "L3", 5: "L4"}

#: Rendered vertebral levels, cranial to caudal.
LEVELS: tuple[str, ...] = ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5")

#: Levels the fracture model reads (Kong et al. 2025), cranial to caudal.
MODEL_LEVELS: tuple[str, ...] = tuple(BODY_LABELS.values())

#: ``LABELS`` id of each rendered vertebra.
LEVEL_LABEL: dict[str, int] = {
    name.removeprefix("vertebrae_"): i for i, name in LABELS.items() if name.startswith("vert")
}
