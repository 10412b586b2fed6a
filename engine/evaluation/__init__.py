"""Survival and detection evaluation: pure functions on arrays, results as named tuples.

Conventions: time in years; event 0 censored, 1 vertebral fracture, 2 competing death,
validated once by :meth:`SurvivalTarget.from_arrays`; higher score = higher risk. No
database and no plotting here: ``vfrisk report``, the experiments and the dashboard call
these functions.
"""

from __future__ import annotations

from engine.evaluation.bootstrap import BOOTSTRAP_MAX_N, N_BOOT, bootstrap_weights
from engine.evaluation.brier import BrierResult, brier_score
from engine.evaluation.calibration import (
    CalibrationResult,
    CalibrationTable,
    calibration,
    calibration_table,
    recalibration_fit,
)
from engine.evaluation.concordance import (
    ConcordanceResult,
    PairedComparison,
    compare_concordance,
    harrell_c,
    uno_c,
)
from engine.evaluation.curves import (
    GroupCurves,
    IncidenceCurve,
    LogRankResult,
    SurvivalCurve,
    aalen_johansen,
    curves_by_risk_group,
    kaplan_meier,
    logrank_test,
    numbers_at_risk,
)
from engine.evaluation.decision import DecisionCurve, net_benefit
from engine.evaluation.detection import (
    AucComparison,
    AucResult,
    ThresholdMetrics,
    auroc,
    compare_auroc,
    threshold_metrics,
)
from engine.evaluation.ipcw import CensoringSurvival, censoring_survival
from engine.evaluation.target import SurvivalTarget
from engine.evaluation.timeauc import TimeAucResult, cumulative_dynamic_auc

__all__ = [
    "BOOTSTRAP_MAX_N",
    "N_BOOT",
    "AucComparison",
    "AucResult",
    "BrierResult",
    "CalibrationResult",
    "CalibrationTable",
    "CensoringSurvival",
    "ConcordanceResult",
    "DecisionCurve",
    "GroupCurves",
    "IncidenceCurve",
    "LogRankResult",
    "PairedComparison",
    "SurvivalCurve",
    "SurvivalTarget",
    "ThresholdMetrics",
    "TimeAucResult",
    "aalen_johansen",
    "auroc",
    "bootstrap_weights",
    "brier_score",
    "calibration",
    "calibration_table",
    "censoring_survival",
    "compare_auroc",
    "compare_concordance",
    "cumulative_dynamic_auc",
    "curves_by_risk_group",
    "harrell_c",
    "kaplan_meier",
    "logrank_test",
    "net_benefit",
    "numbers_at_risk",
    "recalibration_fit",
    "threshold_metrics",
    "uno_c",
]
