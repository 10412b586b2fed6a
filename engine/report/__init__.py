"""``vfrisk report``: the study's evaluation table from predictions and clinical outcomes.

Modules: ``settings`` (``[report]``), ``cohort`` (the analysis frame, read through
``engine.store.report_tables``), ``tables`` (pure: the long evaluation table from
``engine.evaluation``), ``run`` (orchestration: evaluate and store the run), ``suppress``
(small-cell suppression), ``document`` (the report as sections and tables), ``render``
(Markdown, HTML, CSV, JSON writers) and ``figures`` (plotly figures of the HTML report,
plotly imported lazily).
"""

from engine.report.cohort import AnalysisCohort, ModelInfo, load_cohort
from engine.report.render import FORMATS, check_output, to_markdown, write
from engine.report.run import Report, build_report
from engine.report.settings import ReportSettings, settings_from_config
from engine.report.tables import EvaluationTable, evaluate

__all__ = [
    "FORMATS",
    "AnalysisCohort",
    "EvaluationTable",
    "ModelInfo",
    "Report",
    "ReportSettings",
    "build_report",
    "check_output",
    "evaluate",
    "load_cohort",
    "settings_from_config",
    "to_markdown",
    "write",
]
