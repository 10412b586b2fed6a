"""Recycling of the large float32 volumes the phantom and the scanner return.

A full-size volume is ~330 MB. Freshly mapped memory is page-faulted on first touch,
which costs more than painting or filtering it (worse on virtual machines, where freed
memory is handed back to the host within seconds). The cohort generator renders and
reconstructs one patient after another, so the volumes of the previous patient are
recycled once nothing refers to them any more.
"""

from __future__ import annotations

import sys
import threading

import numpy as np

__all__ = ["empty_f32"]

_KEEP = 3  # buffers kept: phantom HU, one reconstruction, one spare
_MIN_BYTES = 64 << 20  # smaller volumes are cheap to allocate
_lock = threading.Lock()
_buffers: list[np.ndarray] = []


def _is_free(i: int) -> bool:
    """Whether the pool holds the only reference to buffer ``i``."""
    # references: the list and getrefcount's argument (index, not a loop variable, so
    # that no iterator tuple holds one more)
    return sys.getrefcount(_buffers[i]) == 2


def empty_f32(shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialized float32 array of ``shape``, reusing a free pooled buffer if any.

    A pooled buffer is free when the pool holds the only reference to it: every array
    handed out is a view whose ``base`` is the buffer, so a live view (or any view of it)
    keeps the buffer's reference count up.

    Parameters
    ----------
    shape : tuple of int
        Shape of the array.

    Returns
    -------
    numpy.ndarray
        float32, C-contiguous, contents undefined.
    """
    n = int(np.prod(shape))
    if 4 * n < _MIN_BYTES:
        return np.empty(shape, np.float32)
    with _lock:
        for i in range(len(_buffers)):
            if _is_free(i) and n <= _buffers[i].size:
                buf = _buffers.pop(i)
                _buffers.append(buf)  # most recently used last
                return buf[:n].reshape(shape)
        # twice the size for longer scans later: pages beyond ``n`` are reserved, not
        # touched, so the headroom costs address space only
        buf = np.empty(2 * n, np.float32)
        _buffers.append(buf)
        while len(_buffers) > _KEEP:
            free = [j for j in range(len(_buffers)) if _is_free(j)]
            _buffers.pop(free[0] if free else 0)
        return buf[:n].reshape(shape)
