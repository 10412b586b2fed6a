"""Batch scoring of an archive (``vfrisk score``, issue 7) and ad hoc scoring of one scan.

- :func:`score_archive` (:mod:`engine.score.pipeline`): the selected series of a database
  into ``predictions``, ``biomarkers``, ``series_qa`` and ``failures``, resumable, on the
  local backend (:mod:`engine.score.local`) or a Ray cluster
  (:mod:`engine.score.ray_backend`);
- :func:`score_paths` (:mod:`engine.score.adhoc`): one scan's files to its prediction,
  writing nothing (the dashboard's "Score a scan");
- :func:`load_model` (:mod:`engine.score.model`): the checkpoint, its id, file hash and card.
"""

from engine.score.adhoc import AdhocResult, score_paths
from engine.score.model import LoadedModel, default_model_path, load_model
from engine.score.pipeline import (
    ScoreRequest,
    ScoreSummary,
    describe_score,
    qa_dir_for,
    score_archive,
)

__all__ = [
    "AdhocResult",
    "LoadedModel",
    "ScoreRequest",
    "ScoreSummary",
    "default_model_path",
    "describe_score",
    "load_model",
    "qa_dir_for",
    "score_archive",
    "score_paths",
]
