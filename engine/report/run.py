"""``vfrisk report``: load the cohort, evaluate, store the evaluation run, hand back a Report.

Steps: read the analysis cohort (one read batch; bad input stops here, nothing written) ->
compute the long evaluation table (pure, ``engine.report.tables``) -> record the run in
``runs`` and append its rows to ``evaluation`` in one write transaction. Rendering
(``engine.report.render``) is separate so the CLI can print Markdown and write a file.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass

import pandas as pd

from engine import logs
from engine.report.cohort import AnalysisCohort, load_cohort
from engine.report.settings import ReportSettings
from engine.report.tables import evaluate
from engine.store import Store
from engine.store import report_tables as tables

__all__ = ["Report", "build_report"]


@dataclass(frozen=True)
class Report:
    """One evaluation run.

    Attributes
    ----------
    run_id : str
        The ``runs`` / ``evaluation`` run id.
    generated_at : str
        UTC time of the computation (ISO 8601, seconds).
    cohort : AnalysisCohort
        What was evaluated and where it came from.
    evaluation : pandas.DataFrame
        The long table (``report_tables.EVALUATION_COLUMNS``), exact counts.
    notes : tuple of str
        Metrics that could not be estimated, and why.
    settings : ReportSettings
    seconds : float
        Time to load and evaluate.
    """

    run_id: str
    generated_at: str
    cohort: AnalysisCohort
    evaluation: pd.DataFrame
    notes: tuple[str, ...]
    settings: ReportSettings
    seconds: float

    @property
    def model_id(self) -> str | None:
        """The evaluated model, None for a FRAX-only report."""
        return self.cohort.model.model_id if self.cohort.model else None

    def counts(self) -> dict[str, object]:
        """Counts for the ``runs`` row and the JSON log."""
        f = self.cohort.frame
        return {
            "patients": len(f),
            "events": int((f["event_type"] == 1).sum()),
            "deaths": int((f["event_type"] == 2).sum()),
            "sites": list(self.cohort.sites),
            "clinical_patients": self.cohort.clinical_patients,
            "linked_without_prediction": self.cohort.linked_without_prediction,
            "evaluation_rows": len(self.evaluation),
            "not_estimable": len(self.notes),
            "model_id": self.model_id,
        }


def build_report(
    store: Store,
    settings: ReportSettings,
    *,
    model_id: str | None = None,
    config_hash: str = "",
    run_id: str | None = None,
    save: bool = True,
) -> Report:
    """Evaluate the cohort in ``store`` and (``save``) append the rows to ``evaluation``.

    Parameters
    ----------
    store : Store
        The database (must exist and hold a clinical table).
    settings : ReportSettings
        ``[report]``.
    model_id : str, optional
        ``--model``; default the latest model with predictions, else FRAX alone.
    config_hash, run_id : str
        Provenance (run id default: the log's, else a new one).
    save : bool
        Record the run in ``runs`` and its rows in ``evaluation``.

    Raises
    ------
    VfriskError
        ``db_not_found``, ``no_clinical_data``, ``model_not_found``.
    """
    start = time.perf_counter()
    cohort = load_cohort(store, model_id)
    run_id = run_id or uuid.uuid4().hex[:12]  # each run its own row in `runs`
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)  # microseconds: orders runs
    table = evaluate(
        cohort.frame, settings, has_model=cohort.model is not None, has_l1_hu=cohort.has_l1_hu
    )
    report = Report(
        run_id=run_id,
        generated_at=now.replace(microsecond=0).isoformat() + "Z",
        cohort=cohort,
        evaluation=table.rows,
        notes=table.notes,
        settings=settings,
        seconds=time.perf_counter() - start,
    )
    if save:
        store.start_run(run_id, "report", config_hash, model_id=report.model_id)
        try:
            with store.write() as con:
                tables.insert_evaluation(
                    con, table.rows, run_id=run_id, model_id=report.model_id, computed_at=now
                )
        except BaseException as exc:
            store.finish_run(run_id, "failed", {"error": str(exc)[:500]})
            raise
        store.finish_run(run_id, "ok", report.counts())
    logs.event("report.evaluated", run_id=run_id, **report.counts())
    return report
