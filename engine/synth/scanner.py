"""Scanner image formation: reconstruction kernels, noise, calibration and the scout.

The phantom (``engine.synth.phantom``) gives noise-free true HU with partial volume; this
module turns it into what a scanner writes. A *soft* kernel (GE STANDARD, Siemens B30f)
blurs slightly and gives in-plane correlated noise; a *bone* kernel (BONE, B70f) sharpens
edges and is much noisier (DESIGN.md: soft 10-30 HU, bone 50-100 HU). Every site adds its
own calibration offset. Work is done in slabs of slices so that it stays in cache.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from engine.geometry import Grid
from engine.synth._pool import empty_f32

__all__ = ["HU_MAX", "HU_MIN", "localizer", "reconstruct"]

HU_MIN = -1024.0  #: lowest value a 12-bit CT image stores (air is clipped here)
HU_MAX = 3071.0  #: highest value of a 12-bit CT image

_SLAB = 4  # slices processed together (a slab stays in cache)
_BANK = 16  # slices of pre-filtered noise drawn per reconstruction
_W_SOFT = 0.19  # side weight of the 3-tap soft kernel: Gaussian sigma ~0.62 px
_W_Z_THIN = 0.15  # mild through-plane blur for slices thinner than 1.5 mm
_W_BONE_BLUR = 0.25  # side weight of the low-pass inside the unsharp mask
_BONE_AMOUNT = 1.2  # unsharp-mask gain of the bone kernel


def _smooth3(a: np.ndarray, axis: int, w: float, out: np.ndarray) -> np.ndarray:
    """3-tap symmetric filter ``[w, 1 - 2w, w]`` along ``axis``, edges replicated.

    Written as in-place numpy passes on small slabs, which stay in cache (several times
    faster than ``scipy.ndimage.correlate1d`` along a strided axis).
    """
    n = a.shape[axis]
    if n < 2 or w == 0.0:
        out[...] = a
        return out

    def part(x: np.ndarray, s: slice) -> np.ndarray:
        idx: list[slice] = [slice(None)] * x.ndim
        idx[axis] = s
        return x[tuple(idx)]

    r = np.float32(w / (1.0 - 2.0 * w))
    mid = part(out, slice(1, n - 1))
    np.add(part(a, slice(0, n - 2)), part(a, slice(2, n)), out=mid)
    for o_s, a_s in ((slice(0, 1), slice(1, 2)), (slice(n - 1, n), slice(n - 2, n - 1))):
        np.add(part(a, o_s), part(a, a_s), out=part(out, o_s))
    out *= r
    out += a
    out *= np.float32(1.0 - 2.0 * w)
    return out


def _filter_slab(x: np.ndarray, kernel: str, tmp: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Apply the in-plane kernel to a slab ``(nz, ny, nx)`` (float32)."""
    if kernel == "soft":
        _smooth3(x, 2, _W_SOFT, tmp)
        return _smooth3(tmp, 1, _W_SOFT, out)
    # bone: unsharp mask x + amount * (x - lowpass(x))
    _smooth3(x, 2, _W_BONE_BLUR, out)
    _smooth3(out, 1, _W_BONE_BLUR, tmp)
    np.subtract(x, tmp, out=out)
    out *= _BONE_AMOUNT
    out += x
    return out


def _smooth3_wrap(a: np.ndarray, axis: int, w: float) -> np.ndarray:
    """3-tap symmetric filter ``[w, 1 - 2w, w]`` along ``axis`` with periodic boundaries."""
    n = a.shape[axis]
    if n < 3:
        out = np.roll(a, 1, axis)
        out += np.roll(a, -1, axis)
    else:
        # roll(a, 1) + roll(a, -1) without the two rolled copies: a[i - 1] + a[i + 1]

        def part(x: np.ndarray, s: slice) -> np.ndarray:
            idx: list[slice] = [slice(None)] * x.ndim
            idx[axis] = s
            return x[tuple(idx)]

        out = np.empty_like(a)
        np.add(part(a, slice(0, n - 2)), part(a, slice(2, n)), out=part(out, slice(1, n - 1)))
        np.add(part(a, slice(n - 1, n)), part(a, slice(1, 2)), out=part(out, slice(0, 1)))
        np.add(part(a, slice(n - 2, n - 1)), part(a, slice(0, 1)), out=part(out, slice(n - 1, n)))
    out *= np.float32(w)
    out += np.float32(1.0 - 2.0 * w) * a
    return out


def _noise_bank(
    shape_yx: tuple[int, int], kernel: str, z_weight: float, rng: np.random.Generator
) -> np.ndarray:
    """Unit-sd noise with the texture of ``kernel``, periodic in every axis.

    White noise filtered by the in-plane kernel (and the through-plane blur for thin
    slices) with wrap-around boundaries, so that any cyclic shift of a slice is again a
    seamless sample of the same noise process. Normalized to sample sd 1.

    Returns
    -------
    numpy.ndarray
        float32, shape (``_BANK``, ny, nx).
    """
    n = rng.standard_normal((_BANK, *shape_yx), dtype=np.float32)
    if kernel == "soft":
        n = _smooth3_wrap(_smooth3_wrap(n, 2, _W_SOFT), 1, _W_SOFT)
    else:
        low = _smooth3_wrap(_smooth3_wrap(n, 2, _W_BONE_BLUR), 1, _W_BONE_BLUR)
        n += _BONE_AMOUNT * (n - low)
    if z_weight:
        n = _smooth3_wrap(n, 0, z_weight)
    n /= np.float32(n.std(dtype=np.float64))
    return n


def _add_shifted(dst: np.ndarray, src: np.ndarray, oy: int, ox: int, negate: bool) -> None:
    """``dst += +-roll(src, (-oy, -ox))`` in place, as four block operations (no copy)."""
    op = np.subtract if negate else np.add
    ny, nx = src.shape
    for d_y, s_y in ((slice(0, ny - oy), slice(oy, ny)), (slice(ny - oy, ny), slice(0, oy))):
        for d_x, s_x in ((slice(0, nx - ox), slice(ox, nx)), (slice(nx - ox, nx), slice(0, ox))):
            d = dst[d_y, d_x]
            if d.size:
                op(d, src[s_y, s_x], out=d)


def _noise_plan(nz: int, shape_yx: tuple[int, int], run: int, rng: np.random.Generator):
    """Per slice: bank index, cyclic shift (y, x), flips (y, x) and sign of its noise.

    Slices come in runs of ``run`` consecutive bank slices that share shift, flips and
    sign, which keeps the through-plane correlation of the bank inside a run.
    """
    n_runs = -(-nz // run)
    start = rng.integers(0, _BANK, n_runs)
    oy = rng.integers(0, shape_yx[0], n_runs)
    ox = rng.integers(0, shape_yx[1], n_runs)
    flips = rng.integers(0, 2, (n_runs, 3)).astype(bool)
    for k in range(nz):
        r, t = divmod(k, run)
        yield (start[r] + t) % _BANK, int(oy[r]), int(ox[r]), flips[r]


def _reconstruct_thin(
    hu: np.ndarray, kernel: str, z_weight: float, offset: np.float32, out: np.ndarray
) -> Iterator[int]:
    """``out = smooth_z(filter_xy(hu)) + offset`` with a rolling window of filtered slices.

    Every slice is filtered in-plane once (a slab with halo slices filters them twice) and
    the through-plane blur is computed straight into ``out`` with the operations of
    :func:`_smooth3` in the same order, so the values are the same to the bit. Yields
    each slice index ``k`` once ``out[k]`` is final.
    """
    nz, ny, nx = hu.shape
    ring = np.empty((3, 1, ny, nx), np.float32)
    tmp = np.empty((1, ny, nx), np.float32)

    def filtered(k: int) -> np.ndarray:
        return _filter_slab(hu[k : k + 1], kernel, tmp, ring[k % 3])

    r = np.float32(z_weight / (1.0 - 2.0 * z_weight))
    c = np.float32(1.0 - 2.0 * z_weight)
    filtered(0)
    filtered(1)
    for k in range(nz):
        if k + 1 < nz and k >= 1:
            filtered(k + 1)
        mid = ring[k % 3]
        lo = ring[(k - 1) % 3] if k > 0 else mid
        hi = ring[(k + 1) % 3] if k + 1 < nz else mid
        o = out[k : k + 1]
        np.add(lo, hi, out=o)
        o *= r
        o += mid
        o *= c
        o += offset
        yield k


def reconstruct(
    hu: np.ndarray,
    grid: Grid,
    *,
    kernel: str,
    noise_sd: float,
    hu_offset: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Simulate the reconstructed CT image of a noise-free phantom.

    The true image is filtered by the kernel and kernel-shaped noise is added (the same
    as filtering image + white noise, the filter being linear). The noise comes from a
    small bank of ``_BANK`` slices of white noise filtered once by the kernel with
    periodic boundaries; every output slice takes a bank slice under a random cyclic
    shift, flips and sign (views, no copies), which keeps the noise sd and its in-plane
    correlation exactly while drawing ~20x fewer random numbers than one per voxel. For
    thin slices the bank is also blurred through-plane and consecutive slices take
    consecutive bank slices (runs of ``_BANK // 2``) to keep that correlation.

    Parameters
    ----------
    hu : numpy.ndarray
        True HU, shape (nz, ny, nx), as ``engine.synth.phantom.render`` returns it.
    grid : Grid
        The grid of ``hu``; slices thinner than 1.5 mm also get a mild through-plane blur.
    kernel : {'soft', 'bone'}
        'soft': 3-tap blur (Gaussian sigma ~0.6 px); 'bone': unsharp mask (sharper edges).
    noise_sd : float
        Standard deviation (HU) of the image noise in a uniform region.
    hu_offset : float
        Site calibration offset (HU) added to every value.
    rng : numpy.random.Generator
        Source of the noise.

    Returns
    -------
    numpy.ndarray
        float32, shape (nz, ny, nx), HU clipped to the 12-bit range [-1024, 3071].
    """
    if kernel not in ("soft", "bone"):
        raise ValueError(f"kernel must be 'soft' or 'bone', got {kernel!r}")
    if hu.shape != tuple(grid.shape_zyx):
        raise ValueError(f"volume shape {hu.shape} does not match grid {grid.shape_zyx}")
    nz, ny, nx = hu.shape
    z_weight = _W_Z_THIN if (kernel == "soft" and grid.spacing_zyx[0] < 1.5 and nz > 1) else 0.0
    plan = None
    if noise_sd > 0:
        bank = _noise_bank((ny, nx), kernel, z_weight, rng)
        bank *= np.float32(noise_sd)
        plan = _noise_plan(nz, (ny, nx), _BANK // 2 if z_weight else 1, rng)
    out = empty_f32(hu.shape)

    def finish(o: np.ndarray) -> None:
        """Add the noise to the slices ``o`` and clip them to the 12-bit range."""
        if plan is not None:
            for ok in o:
                j, oy, ox, (fy, fx, neg) = next(plan)
                src = bank[j][:: -1 if fy else 1, :: -1 if fx else 1]
                _add_shifted(ok, src, oy, ox, bool(neg))
        np.clip(o, HU_MIN, HU_MAX, out=o)

    if z_weight:
        for k in _reconstruct_thin(hu, kernel, z_weight, np.float32(hu_offset), out):
            finish(out[k : k + 1])
        return out
    slab_shape = (min(_SLAB, nz), ny, nx)
    tmp, res = (np.empty(slab_shape, np.float32) for _ in range(2))
    for k0 in range(0, nz, _SLAB):
        k1 = min(k0 + _SLAB, nz)
        y = _filter_slab(hu[k0:k1], kernel, tmp[: k1 - k0], res[: k1 - k0])
        np.add(y, np.float32(hu_offset), out=out[k0:k1])
        finish(out[k0:k1])
    return out


def localizer(hu: np.ndarray, grid: Grid) -> tuple[np.ndarray, tuple[float, float]]:
    """An anteroposterior scout (topogram) computed as a projection of the volume.

    Linear attenuation ``mu = 0.0195 / mm * (1 + HU / 1000)`` (water at ~70 keV) is
    summed along y and mapped to 12-bit values ``4095 * (1 - exp(-p / 4))``: bone and thick
    tissue bright, air dark, as scanners display an AP topogram.

    Parameters
    ----------
    hu : numpy.ndarray
        HU volume, shape (nz, ny, nx) on ``grid``.
    grid : Grid
        Its grid.

    Returns
    -------
    image : numpy.ndarray
        uint16, shape (nz, nx); row 0 is the most cranial slice (head at the top), columns
        run along +x (patient left on the right of the image).
    spacing : tuple of float
        Pixel spacing ``(row, col)`` in mm: ``(dz, dx)``.
    """
    dz, dy, dx = grid.spacing_zyx
    p = np.zeros((hu.shape[0], hu.shape[2]), np.float64)
    for k0 in range(0, hu.shape[0], _SLAB):
        mu = np.clip(hu[k0 : k0 + _SLAB], -1000.0, None, dtype=np.float32)
        p[k0 : k0 + _SLAB] = mu.sum(axis=1, dtype=np.float64)
    # sum over y of (1 + HU/1000) * mu_water * dy, computed from the summed HU
    p = (hu.shape[1] + p / 1000.0) * 0.0195 * dy
    img = np.round(4095.0 * (1.0 - np.exp(-p / 4.0)))
    return img[::-1].astype(np.uint16), (float(dz), float(dx))
