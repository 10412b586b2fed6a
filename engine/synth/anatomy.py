"""Patient anatomy of the synthetic phantom: every size, position and HU of one patient.

``sample_anatomy`` turns a population row (sex, stature, BMI, per-level trabecular HU and
fractures, muscle areas) into an ``Anatomy`` in DICOM patient coordinates (LPS, mm): x to
the patient's left, y posterior, z cranial. Sizes follow the reference table of DESIGN.md
scaled by stature. The spine is stacked from the sacral promontory upwards: each segment
is tilted in the sagittal plane (``tilt`` > 0: cranial end towards anterior), giving a
lumbar lordosis of 40-60 degrees from L1 to S1; a wedge fracture adds its wedge angle to
the segments above it (local kyphosis). ``scan_grid`` places a full or cropped scan.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.geometry import Grid
from engine.synth.labels import LEVELS
from engine.synth.profiles import SiteProfile

__all__ = ["Anatomy", "Disc", "Vertebra", "level_extent_z", "sample_anatomy", "scan_grid"]

# Reference sizes at stature 170 cm (mm): body height, width, depth; spinous process
# length; transverse-process half span (DESIGN.md table; Panjabi 1992 for the elements).
_SIZE = {
    "T10": (21.0, 33.0, 27.0, 30.0, 30.0),
    "T11": (22.0, 35.0, 28.5, 30.0, 26.0),
    "T12": (23.5, 38.0, 30.0, 30.0, 22.0),
    "L1": (25.0, 41.0, 31.0, 30.0, 36.0),
    "L2": (25.8, 43.0, 32.5, 31.0, 41.0),
    "L3": (26.5, 45.0, 33.5, 31.0, 45.0),
    "L4": (27.0, 47.0, 34.0, 29.0, 42.0),
    "L5": (26.5, 49.0, 34.5, 26.0, 40.0),
}
# Disc below each level (mm): 6-8 at T12-L1, 8-12 lower lumbar (DESIGN.md).
_DISC = {
    "T10": 5.5,
    "T11": 6.0,
    "T12": 7.0,
    "L1": 8.5,
    "L2": 9.5,
    "L3": 10.0,
    "L4": 11.0,
    "L5": 10.5,
}
# Share of the L1-S1 lordosis reached at each level's centre (more of it low in the spine).
_LORD_FRAC = {
    "L5": 0.25,
    "L4": 0.45,
    "L3": 0.62,
    "L2": 0.78,
    "L1": 0.92,
    "T12": 1.0,
    "T11": 1.02,
    "T10": 1.02,
}


@dataclass(frozen=True)
class Vertebra:
    """One vertebra. Local frame: ``a`` = x, ``b`` posterior, ``c`` along the tilted axis.

    Attributes
    ----------
    level : str
        'T10'..'L5'.
    center : tuple of float
        Patient (x, y, z) mm of the body centre (mid-height of the posterior wall).
    tilt : float
        Sagittal tilt of the axis (rad); positive: cranial end towards anterior (-y).
    height, width, depth : float
        Nominal (unfractured) body height, width and depth (mm).
    shape : str
        '' | 'wedge' | 'biconcave' | 'crush'.
    height_loss : float
        Fraction of ``height`` lost at the most compressed point.
    hu_trab, hu_cortex, cortex_mm : float
        Trabecular HU, true HU of the cortical shell and its thickness (mm).
    cement : bool
        Vertebroplasty cement in the body.
    canal_w, canal_d : float
        Spinal canal width and depth (mm).
    spinous_len, tp_span : float
        Spinous process length (mm) and transverse-process half span from the midline.
    hu_posterior : float
        HU of the marrow of the posterior elements.
    """

    level: str
    center: tuple[float, float, float]
    tilt: float
    height: float
    width: float
    depth: float
    shape: str
    height_loss: float
    hu_trab: float
    hu_cortex: float
    cortex_mm: float
    cement: bool
    canal_w: float
    canal_d: float
    spinous_len: float
    tp_span: float
    hu_posterior: float

    @property
    def body_height(self) -> float:
        """Height (mm) of the posterior wall (reduced only by a crush fracture)."""
        return self.height * (1.0 - self.height_loss) if self.shape == "crush" else self.height


@dataclass(frozen=True)
class Disc:
    """An intervertebral disc: elliptic cylinder between two endplates (mm, rad, HU)."""

    center: tuple[float, float, float]
    tilt: float
    height: float
    width: float
    depth: float
    hu: float


@dataclass(frozen=True)
class Anatomy:
    """Every geometric and HU parameter of one synthetic patient (LPS mm, HU).

    Attributes
    ----------
    sex, height_cm, bmi, contrast, miss_t12, miss_l4 : patient fields.
    scale : float
        Skeletal size factor (stature and sex).
    vertebrae : tuple of Vertebra
        T10..L5, cranial to caudal.
    discs : tuple of Disc
        T10/T11 .. L5/S1, cranial to caudal.
    sacrum : tuple of tuple
        Sacral segments S1..S5 as ``(x, y, z, tilt, height, half_width, half_depth)``.
    body_cx, body_a, body_b : float
        Torso centre x and half width / half depth at L3 (mm).
    y_back : float
        y of the table top, where the back rests (mm).
    fat_sc, wall_mm, visceral_fat : float
        Subcutaneous fat thickness, abdominal wall muscle thickness (mm), and the
        visceral fat share of the abdominal cavity (0-1).
    hu_fat, hu_muscle_wall, hu_bowel, hu_liver, hu_kidney, hu_aorta : float
        Tissue HU (contrast phase already applied).
    psoas_area, psoas_hu, paraspinal_area, paraspinal_hu : float
        Each-side cross-section (mm^2) at L3 and HU of psoas and paraspinal muscles.
    table_drop, table_curve : float
        Table shell geometry (mm).
    texture_seed : int
        Seed of the bowel / visceral-fat texture (keeps ``render`` deterministic).
    """

    sex: str
    height_cm: float
    bmi: float
    contrast: bool
    miss_t12: bool
    miss_l4: bool
    scale: float
    vertebrae: tuple[Vertebra, ...]
    discs: tuple[Disc, ...]
    sacrum: tuple[tuple[float, float, float, float, float, float, float], ...]
    body_cx: float
    body_a: float
    body_b: float
    y_back: float
    fat_sc: float
    wall_mm: float
    visceral_fat: float
    hu_fat: float
    hu_muscle_wall: float
    hu_bowel: float
    hu_liver: float
    hu_kidney: float
    hu_aorta: float
    psoas_area: float
    psoas_hu: float
    paraspinal_area: float
    paraspinal_hu: float
    table_curve: float
    texture_seed: int

    def vertebra(self, level: str) -> Vertebra:
        """The vertebra of ``level`` ('T10'..'L5')."""
        for v in self.vertebrae:
            if v.level == level:
                return v
        raise KeyError(f"no vertebra {level!r}; levels are {LEVELS}")


def _axis(tilt: float) -> tuple[float, float]:
    """(dy, dz) of the unit cranial axis of a segment tilted by ``tilt``."""
    return -math.sin(tilt), math.cos(tilt)


def sample_anatomy(patient: Mapping[str, Any], rng: np.random.Generator) -> Anatomy:
    """Draw one patient's anatomy from a population row.

    Parameters
    ----------
    patient : Mapping
        A population row: ``sex``, ``height_cm``, ``bmi``, ``hu_<LEVEL>``, ``shape_<LEVEL>``,
        ``height_loss_<LEVEL>``, ``cement_<LEVEL>``, ``psoas_area_cm2``,
        ``paraspinal_area_cm2`` (each side, at L3), ``psoas_hu``, ``paraspinal_hu``,
        ``contrast``, ``miss_t12``, ``miss_l4``; ``frailty`` is optional.
    rng : numpy.random.Generator
        Source of the individual variation (habitus, table, spine position, lordosis).

    Returns
    -------
    Anatomy
    """
    male = str(patient["sex"]).upper().startswith("M")
    bmi = float(patient["bmi"])
    contrast = bool(patient.get("contrast", False))
    frailty = float(patient.get("frailty", 0.0) or 0.0)
    scale = float(np.clip((float(patient["height_cm"]) / 170.0) ** 0.8, 0.86, 1.14))
    scale *= (1.03 if male else 0.98) * float(rng.normal(1.0, 0.02))

    # torso: half width / depth at L3 from BMI and sex (abdominal diameters of adults)
    body_a = (132.0 + 3.0 * (bmi - 22.0) + (10.0 if male else 0.0)) * float(rng.normal(1, 0.03))
    body_b = (95.0 + 3.2 * (bmi - 22.0) + (6.0 if male else 0.0)) * float(rng.normal(1, 0.04))
    body_a, body_b = float(np.clip(body_a, 105, 215)), float(np.clip(body_b, 75, 175))
    fat_sc = float(
        np.clip(
            (6.0 + 1.5 * (bmi - 18.0)) * (0.8 if male else 1.15) * rng.normal(1, 0.12), 3.0, 70.0
        )
    )
    wall = float(np.clip(rng.normal(11.0 if male else 9.0, 1.5) * (1.0 - 0.3 * frailty), 5, 16))
    visceral = float(
        np.clip(
            0.25 + 0.025 * (bmi - 22.0) + (0.12 if male else 0.0) + rng.normal(0, 0.06), 0.1, 0.85
        )
    )
    y_back = float(rng.uniform(60.0, 140.0))  # table height relative to the isocentre
    body_cx = float(rng.normal(0.0, 8.0))

    # spine: muscles and posterior elements must fit between the bodies and the skin
    para_depth = float(
        np.clip(
            np.sqrt(float(patient["paraspinal_area_cm2"]) * 100 / math.pi / 1.5) * 2.0, 28.0, 62.0
        )
    )
    spine_x = body_cx + float(rng.normal(0.0, 3.0))
    lordosis = math.radians(float(rng.uniform(40.0, 60.0)))
    # sacral slope follows the lordosis (Roussouly: lordosis ~ slope + 10-15 deg)
    slope = 0.7 * lordosis + math.radians(float(rng.normal(0.0, 2.5)))

    # stack from the S1 endplate upwards, in coordinates relative to the promontory
    vert_rel, disc_rel = [], []
    y, z = 0.0, 0.0
    kyph = 0.0
    below_tilt = slope
    for level in reversed(LEVELS):
        h, w, d, sp, tp = (v * scale for v in _SIZE[level])
        tilt = slope - lordosis * _LORD_FRAC[level] + kyph
        shape = str(patient.get(f"shape_{level}", "") or "")
        loss = float(patient.get(f"height_loss_{level}", 0.0) or 0.0) if shape else 0.0
        loss = float(np.clip(loss, 0.0, 0.8))
        h_body = h * (1.0 - loss) if shape == "crush" else h
        dh = _DISC[level] * scale * float(rng.normal(1.0, 0.05))
        dt = 0.5 * (tilt + below_tilt)
        dy, dz = _axis(dt)
        disc_rel.append((y + dy * dh / 2, z + dz * dh / 2, dt, dh, w, d))
        y, z = y + dy * dh, z + dz * dh
        dy, dz = _axis(tilt)
        vert_rel.append(
            (level, y + dy * h_body / 2, z + dz * h_body / 2, tilt, h, w, d, sp, tp, shape, loss)
        )
        y, z = y + dy * h_body, z + dz * h_body
        if shape == "wedge":
            kyph += math.atan(loss * h / d)
        below_tilt = tilt

    # place the spine: VB centre at L3 this far in front of the skin of the back
    l3 = next(v for v in vert_rel if v[0] == "L3")
    depth_l3 = fat_sc + para_depth + 0.5 * l3[6] + 13.0 * scale
    y0 = y_back - depth_l3 - l3[1]
    z0 = float(rng.uniform(-20.0, 20.0)) - l3[2]

    vertebrae = []
    for level, vy, vz, tilt, h, w, d, sp, tp, shape, loss in reversed(vert_rel):
        hu = float(patient[f"hu_{level}"]) + (float(rng.uniform(10, 20)) if contrast else 0.0)
        thoracic = level.startswith("T")
        vertebrae.append(
            Vertebra(
                level=level,
                center=(spine_x + float(rng.normal(0, 1.0)), y0 + vy, z0 + vz),
                tilt=tilt,
                height=h,
                width=w,
                depth=d,
                shape=shape,
                height_loss=loss,
                hu_trab=hu,
                hu_cortex=float(np.clip(700.0 + 2.5 * hu, 750.0, 1400.0)),
                cortex_mm=float(rng.uniform(0.9, 1.2)),
                cement=bool(patient.get(f"cement_{level}")),
                canal_w=(17.0 if thoracic else 22.0) * scale,
                canal_d=(15.0 if thoracic else 16.0) * scale,
                spinous_len=sp,
                tp_span=tp,
                hu_posterior=float(np.clip(hu + 170, 200, 450)),
            )
        )
    discs = tuple(
        Disc(
            center=(spine_x, y0 + dy_, z0 + dz_),
            tilt=t,
            height=h,
            width=w,
            depth=d,
            hu=float(rng.uniform(75.0, 95.0)),
        )
        for dy_, dz_, t, h, w, d in reversed(disc_rel)
    )

    # sacrum S1..S5: curving posteriorly, tapering (S1 with the alae)
    sacrum = []
    y, z, tilt = 0.0, 0.0, slope
    for i, (h, hw, hd) in enumerate(
        ((28, 52, 17), (24, 44, 14), (20, 32, 11), (16, 22, 9), (14, 14, 7))
    ):
        h, hw, hd = h * scale, hw * scale, hd * scale
        dy, dz = _axis(tilt)
        sacrum.append((spine_x, y0 + y - dy * h / 2, z0 + z - dz * h / 2, tilt, h, hw, hd))
        y, z = y - dy * h * 0.92, z - dz * h * 0.92
        tilt += math.radians(10.0 + 2.0 * i)

    hu_fat = float(rng.uniform(-115.0, -85.0))
    return Anatomy(
        sex="M" if male else "F",
        height_cm=float(patient["height_cm"]),
        bmi=bmi,
        contrast=contrast,
        miss_t12=bool(patient.get("miss_t12", False)),
        miss_l4=bool(patient.get("miss_l4", False)),
        scale=scale,
        vertebrae=tuple(vertebrae),
        discs=discs,
        sacrum=tuple(sacrum),
        body_cx=body_cx,
        body_a=body_a,
        body_b=body_b,
        y_back=y_back,
        fat_sc=fat_sc,
        wall_mm=wall,
        visceral_fat=visceral,
        hu_fat=hu_fat,
        hu_muscle_wall=float(rng.uniform(38.0, 50.0)),
        hu_bowel=float(rng.uniform(25, 40)) + (15.0 if contrast else 0.0),
        hu_liver=float(rng.uniform(52.0, 65.0)) + (50.0 if contrast else 0.0),
        hu_kidney=float(rng.uniform(150.0, 190.0) if contrast else rng.uniform(28.0, 36.0)),
        hu_aorta=float(rng.uniform(150.0, 200.0) if contrast else rng.uniform(35.0, 48.0)),
        psoas_area=float(patient["psoas_area_cm2"]) * 100.0,
        psoas_hu=float(patient["psoas_hu"]),
        paraspinal_area=float(patient["paraspinal_area_cm2"]) * 100.0,
        paraspinal_hu=float(patient["paraspinal_hu"]),
        table_curve=float(rng.uniform(10.0, 25.0)),
        texture_seed=int(rng.integers(0, 2**31 - 1)),
    )


def _body_points(v: Vertebra) -> np.ndarray:
    """Patient (y, z) of the corners of the body's sagittal outline, shape (4, 2)."""
    dy, dz = _axis(v.tilt)
    py, pz = math.cos(v.tilt), math.sin(v.tilt)  # posterior unit vector (y, z)
    h = v.body_height / 2
    d = v.depth / 2
    return np.array(
        [
            (v.center[1] + sb * d * py + sc * h * dy, v.center[2] + sb * d * pz + sc * h * dz)
            for sb in (-1, 1)
            for sc in (-1, 1)
        ]
    )


def level_extent_z(anatomy: Anatomy, level: str) -> tuple[float, float]:
    """Cranio-caudal extent ``(z_low, z_high)`` in mm of a vertebral body (tilt included).

    ``level`` is 'T10'..'L5', or 'S1' for the first sacral segment.
    """
    if level == "S1":
        x, y, z, tilt, h, _, hd = anatomy.sacrum[0]
        half = 0.5 * h * abs(math.cos(tilt)) + hd * abs(math.sin(tilt))
        return z - half, z + half
    pts = _body_points(anatomy.vertebra(level))
    return float(pts[:, 1].min()), float(pts[:, 1].max())


def _sacrum_tip_z(anatomy: Anatomy) -> float:
    x, y, z, tilt, h, _, hd = anatomy.sacrum[-1]
    return z - 0.5 * h * abs(math.cos(tilt)) - hd * abs(math.sin(tilt))


def _lattice(lo: float, hi: float, step: float, anchor: float) -> tuple[float, int]:
    """First voxel centre and count of a lattice ``anchor + (m + 0.5) * step`` covering [lo, hi]."""
    m0 = math.floor((lo - anchor) / step - 0.5)
    m1 = math.ceil((hi - anchor) / step - 0.5)
    return anchor + (m0 + 0.5) * step, m1 - m0 + 1


def scan_grid(
    anatomy: Anatomy, profile: SiteProfile, resolution: str, rng: np.random.Generator
) -> Grid:
    """The voxel grid of one scan of ``anatomy`` at a site.

    Parameters
    ----------
    anatomy : Anatomy
    profile : SiteProfile
        Gives the pixel spacing range and the slice thickness (= slice spacing).
    resolution : {'full', 'low'}
        'full': 512 x 512 with the FOV centred on the body and table, from the top of
        T10 to below the sacrum tip. 'low': a cropped FOV around the spine (bodies, psoas,
        paraspinal muscles) from about the top of T11 to the bottom of L5.
    rng : numpy.random.Generator
        Draws the pixel spacing and small margins.

    Returns
    -------
    Grid
        In-plane spacing is ``FOV / 512`` with an integer FOV (mm), voxel centres lie on
        the lattice ``centre + (m + 0.5) * spacing`` and slice positions are integer
        multiples of the slice spacing, so every DICOM position is exact. With
        ``miss_t12`` the top lies 5-15 mm below the top of T12; with ``miss_l4`` the
        bottom lies 5-15 mm above the bottom of L4.
    """
    if resolution not in ("full", "low"):
        raise ValueError(f"resolution must be 'full' or 'low', got {resolution!r}")
    lo_s, hi_s = sorted(profile.pixel_spacing_mm)
    needed = max(2.0 * anatomy.body_a + 24.0, 2.0 * anatomy.body_b + 60.0) / 512.0
    ds = float(np.clip(max(float(rng.uniform(lo_s, hi_s)), needed), lo_s, hi_s))
    ds = round(ds * 512.0) / 512.0
    dz = float(profile.slice_thickness_mm)
    cx = float(round(anatomy.body_cx))
    cy = float(round(anatomy.y_back + 18.0 - anatomy.body_b))  # body plus table
    if resolution == "full":
        top = level_extent_z(anatomy, "T10")[1] + float(rng.uniform(3.0, 12.0))
        bottom = _sacrum_tip_z(anatomy) - float(rng.uniform(10.0, 25.0))
        x0, nx = cx - 255.5 * ds, 512
        y0, ny = cy - 255.5 * ds, 512
    else:
        top = level_extent_z(anatomy, "T11")[1] + float(rng.uniform(0.0, 8.0))
        bottom = level_extent_z(anatomy, "L5")[0] - float(rng.uniform(0.0, 6.0))
        l3, l5 = anatomy.vertebra("L3"), anatomy.vertebra("L5")
        half_x = 0.5 * l5.width + 2.0 * math.sqrt(anatomy.psoas_area * 1.6 / math.pi) + 22.0
        half_x = max(half_x, 16.0 + 2.0 * math.sqrt(anatomy.paraspinal_area * 1.6 / math.pi))
        sx = l3.center[0]
        y_lo = min(v.center[1] - 0.5 * v.depth for v in anatomy.vertebrae) - 40.0
        y_hi = anatomy.y_back - 0.5 * anatomy.fat_sc + 4.0
        x0, nx = _lattice(sx - half_x, sx + half_x, ds, cx)
        y0, ny = _lattice(y_lo, y_hi, ds, cy)
    if anatomy.miss_t12:
        top = min(top, level_extent_z(anatomy, "T12")[1] - float(rng.uniform(5.0, 15.0)))
    if anatomy.miss_l4:
        bottom = max(bottom, level_extent_z(anatomy, "L4")[0] + float(rng.uniform(5.0, 15.0)))
    k_lo, k_hi = math.ceil(bottom / dz), math.floor(top / dz)
    return Grid(
        origin_xyz=(x0, y0, k_lo * dz),
        spacing_zyx=(dz, ds, ds),
        shape_zyx=(k_hi - k_lo + 1, ny, nx),
    )
