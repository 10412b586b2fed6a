"""SQL of ``vfrisk train``: the labelled patients a model learns from and is judged on.

``models.data.build_cache`` calls :func:`labelled_scans` with a connection from
``Store.read()``; the trainer's other database work (biomarkers) goes through
:mod:`engine.store.biomarker_tables`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb

__all__ = ["LabelledScan", "clinical_sites", "labelled_scans"]

#: Columns of each row of :func:`labelled_scans`, in order.
LabelledScan = tuple[str, str, str, Any, float, int, str]


def labelled_scans(
    con: duckdb.DuckDBPyConnection, sites: Sequence[str] | None = None
) -> list[LabelledScan]:
    """Linked patients with their index scan and labels, ordered by patient_id.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        From ``Store.read()``.
    sites : sequence of str, optional
        Clinical ``site`` values to keep; None = every site.

    Returns
    -------
    list of tuple
        ``(patient_id, series_uid, site, prevalent_vf (int or None), followup_years,
        event_type, content_hash)`` of every patient whose ``clinical_links.status`` is
        ``linked`` (one index scan each, ``[clinical] index_scan``).
    """
    where = ""
    params: list[object] = []
    if sites is not None:
        if not sites:
            return []
        where = f"AND c.site IN ({', '.join('?' for _ in sites)})"
        params = list(sites)
    rows = con.execute(
        f"""
        SELECT c.patient_id, l.series_uid, c.site, c.prevalent_vf, c.followup_years,
               c.event_type, coalesce(s.content_hash, '')
        FROM clinical_links l
        JOIN clinical c USING (patient_id)
        LEFT JOIN series s ON s.series_uid = l.series_uid
        WHERE l.status = 'linked' AND l.series_uid IS NOT NULL {where}
        ORDER BY c.patient_id
        """,
        params,
    ).fetchall()
    return [
        (str(p), str(u), str(site), None if pv is None else int(pv), float(t), int(e), str(h))
        for p, u, site, pv, t, e, h in rows
    ]


def clinical_sites(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Clinical patients per ``site`` (all, linked or not), ordered by site."""
    rows = con.execute("SELECT site, count(*) FROM clinical GROUP BY site ORDER BY site")
    return {str(site): int(n) for site, n in rows.fetchall()}
