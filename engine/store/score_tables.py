"""SQL of ``vfrisk score``: the manifest of series to score, models, and one batch's results.

``engine.score`` calls :func:`manifest` and :func:`scored_counts` with a connection from
``Store.read()``, and :func:`register_model` and :func:`write_batch` with one from
``Store.write()``. :func:`write_batch` writes everything a batch produced (predictions,
longer horizons, biomarkers, QA facts, failures) inside the caller's single transaction,
so a killed run leaves either the whole batch or none of it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from engine.anatomy.biomarkers import Biomarkers
from engine.store.biomarker_tables import insert_biomarkers

__all__ = [
    "FailureRow",
    "ManifestEntry",
    "PredictionRow",
    "QaRow",
    "manifest",
    "register_model",
    "scored_counts",
    "write_batch",
]

#: Years stored as columns of ``predictions`` (risk_1y .. risk_5y); later ones go long-form.
WIDE_YEARS = 5


@dataclass(frozen=True)
class ManifestEntry:
    """One selected series that a scoring run will score.

    Attributes
    ----------
    series_uid : str
    patient_id : str or None
    why : str
        ``new``, ``changed`` (content changed since it was scored or failed),
        ``retry`` (failed before, ``--retry-failed``) or ``rescore`` (``--rescore``).
    """

    series_uid: str
    patient_id: str | None
    why: str


@dataclass(frozen=True)
class PredictionRow:
    """One ``predictions`` row (plus the years beyond 5 in ``risk``)."""

    series_uid: str
    patient_id: str | None
    p_fracture: float | None
    risk: tuple[float, ...] | None
    content_hash: str


@dataclass(frozen=True)
class FailureRow:
    """One ``failures`` row."""

    series_uid: str
    stage: str
    reason_code: str
    error: str
    content_hash: str


@dataclass(frozen=True)
class QaRow:
    """One ``series_qa`` row."""

    series_uid: str
    segmentation_source: str
    qa_flags: tuple[str, ...]
    qa_png: str | None


def manifest(
    con: duckdb.DuckDBPyConnection,
    model_id: str,
    *,
    rescore: bool = False,
    retry_failed: bool = False,
) -> tuple[list[ManifestEntry], dict[str, int]]:
    """The selected series ``model_id`` still has to score, ordered by series_uid.

    A selected series is due when it has no prediction of this model for its current
    ``content_hash`` and no failure for it either (failures only with ``retry_failed``);
    with ``rescore`` every selected series is due.

    Returns
    -------
    entries : list of ManifestEntry
    counts : dict
        ``selected``, ``scored`` (current prediction), ``failed`` (current failure),
        ``due`` (len of entries).
    """
    rows = con.execute(
        """
        SELECT s.series_uid, s.patient_id,
               p.content_hash IS NOT NULL AS has_p, p.content_hash = s.content_hash AS p_ok,
               f.content_hash IS NOT NULL AS has_f, f.content_hash = s.content_hash AS f_ok
        FROM series s
        LEFT JOIN predictions p ON p.series_uid = s.series_uid AND p.model_id = ?
        LEFT JOIN failures f ON f.series_uid = s.series_uid AND f.model_id = ?
        WHERE s.selected
        ORDER BY s.series_uid
        """,
        [model_id, model_id],
    ).fetchall()
    entries: list[ManifestEntry] = []
    scored = failed = 0
    for uid, patient, has_p, p_ok, has_f, f_ok in rows:
        scored += bool(p_ok)
        failed += bool(f_ok) and not p_ok
        if rescore:
            why = "rescore"
        elif p_ok:
            continue
        elif f_ok:
            if not retry_failed:
                continue
            why = "retry"
        else:
            why = "changed" if (has_p or has_f) else "new"
        entries.append(ManifestEntry(uid, patient, why))
    counts = {"selected": len(rows), "scored": scored, "failed": failed, "due": len(entries)}
    return entries, counts


def register_model(
    con: duckdb.DuckDBPyConnection,
    *,
    model_id: str,
    name: str,
    path: str,
    sha256: str,
    preprocessing_version: str,
    card: dict[str, Any] | None,
) -> None:
    """Insert the model, or refresh its name, path, file hash and card (keeps ``created_at``)."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    con.execute(
        """
        INSERT INTO models (model_id, name, path, sha256, preprocessing_version, card, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (model_id) DO UPDATE SET name = excluded.name, path = excluded.path,
            sha256 = excluded.sha256, preprocessing_version = excluded.preprocessing_version,
            card = excluded.card
        """,
        [
            model_id,
            name,
            path,
            sha256,
            preprocessing_version,
            None if card is None else json.dumps(card, sort_keys=True),
            now,
        ],
    )


def _delete(con: duckdb.DuckDBPyConnection, table: str, model_id: str, uids: list[str]) -> None:
    if uids:
        marks = ", ".join("?" for _ in uids)
        con.execute(
            f"DELETE FROM {table} WHERE model_id = ? AND series_uid IN ({marks})", [model_id, *uids]
        )


def write_batch(
    con: duckdb.DuckDBPyConnection,
    *,
    model_id: str,
    preprocessing_version: str,
    run_id: str,
    predictions: Sequence[PredictionRow],
    biomarkers: Sequence[Biomarkers],
    qa: Sequence[QaRow],
    failures: Sequence[FailureRow],
) -> None:
    """Write one batch's results inside the caller's transaction (``Store.write()``).

    A scored series replaces its prediction, longer horizons and any failure of this
    model; a failed one replaces its failure and drops its prediction (the latest attempt
    is what the tables say). Biomarkers and QA facts are keyed by preprocessing version,
    shared by every model scored on the same inputs.
    """
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    touched = [p.series_uid for p in predictions] + [f.series_uid for f in failures]
    for table in ("predictions", "prediction_horizons", "failures"):
        _delete(con, table, model_id, touched)
    if predictions:
        rows, longer = [], []
        for p in predictions:
            risk = list(p.risk or ())
            wide = risk[:WIDE_YEARS] + [None] * (WIDE_YEARS - len(risk[:WIDE_YEARS]))
            rows.append(
                [p.series_uid, p.patient_id, model_id, p.p_fracture, *wide, p.content_hash,
                 run_id, now]
            )  # fmt: skip
            longer += [
                [p.series_uid, model_id, year, value]
                for year, value in enumerate(risk[WIDE_YEARS:], start=WIDE_YEARS + 1)
            ]
        con.executemany(
            "INSERT INTO predictions (series_uid, patient_id, model_id, p_fracture, risk_1y, "
            "risk_2y, risk_3y, risk_4y, risk_5y, content_hash, run_id, scored_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        if longer:
            con.executemany("INSERT INTO prediction_horizons VALUES (?, ?, ?, ?)", longer)
    if failures:
        con.executemany(
            "INSERT INTO failures VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                [f.series_uid, model_id, f.stage, f.reason_code, f.error, f.content_hash, run_id,
                 now]
                for f in failures
            ],
        )  # fmt: skip
    if biomarkers:
        insert_biomarkers(
            con, list(biomarkers), preprocessing_version=preprocessing_version, run_id=run_id,
            measured_at=now,
        )  # fmt: skip
    if qa:
        uids = [q.series_uid for q in qa]
        marks = ", ".join("?" for _ in uids)
        con.execute(
            f"DELETE FROM series_qa WHERE preprocessing_version = ? AND series_uid IN ({marks})",
            [preprocessing_version, *uids],
        )
        con.executemany(
            "INSERT INTO series_qa VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                [q.series_uid, preprocessing_version, q.segmentation_source, ",".join(q.qa_flags),
                 q.qa_png, run_id, now]
                for q in qa
            ],
        )  # fmt: skip


def scored_counts(con: duckdb.DuckDBPyConnection, model_id: str) -> dict[str, int]:
    """Rows of ``model_id`` in ``predictions`` and ``failures`` (for summaries and tests)."""
    n_pred = con.execute(
        "SELECT count(*) FROM predictions WHERE model_id = ?", [model_id]
    ).fetchone()[0]
    n_fail = con.execute("SELECT count(*) FROM failures WHERE model_id = ?", [model_id]).fetchone()[
        0
    ]
    return {"predictions": int(n_pred), "failures": int(n_fail)}
