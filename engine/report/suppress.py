"""Small-cell suppression: counts below ``min_cell_count`` are shown as ``"<k"``.

Applied to every export (Markdown, HTML, CSV, JSON), as cohort tools do (OHDSI: counts
< 5 hidden). Zero is shown: it reveals no individual. The database keeps exact counts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from engine.report.tables import COUNT_METRICS

__all__ = ["count_text", "suppressed_rows"]


def count_text(value: object, k: int) -> str:
    """A count as text, ``"<k"`` when ``0 < value < k``; ``"-"`` when missing."""
    if value is None or value is pd.NA or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    v = int(value)
    return f"<{k}" if 0 < v < k else str(v)


def suppressed_rows(rows: pd.DataFrame, k: int) -> pd.DataFrame:
    """The long evaluation table with ``n``, ``events`` and count estimates suppressed.

    Returns a copy whose ``n`` and ``events`` columns (and ``estimate`` of
    ``COUNT_METRICS`` rows) hold strings where a count is below ``k``.
    """
    out = rows.copy().astype({"n": object, "events": object, "estimate": object})
    for col in ("n", "events"):
        out[col] = [
            None if pd.isna(v) else (count_text(v, k) if 0 < v < k else int(v)) for v in rows[col]
        ]
    is_count = rows["metric"].isin(COUNT_METRICS).to_numpy()
    est = rows["estimate"].to_numpy(dtype=float)
    out["estimate"] = [
        (count_text(e, k) if 0 < e < k else int(e))
        if c and np.isfinite(e)
        else (None if not np.isfinite(e) else float(e))
        for c, e in zip(is_count, est, strict=True)
    ]
    return out
