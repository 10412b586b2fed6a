"""Recalibration of the survival head's risk: the fit, its cross-fitted report, the trainer."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import VfriskError
from engine.evaluation import SurvivalTarget, calibration
from models import recalibration
from models.card import _recalibration_lines
from models.config import ModelConfig
from models.data import Example
from models.inference import Prediction
from models.network import FractureNet
from models.train import TrainRequest, _Fit, _recalibrate, split_indices

YEARS = 5


def _cohort(n: int, seed: int, distort: tuple[float, float] = (0.4, 1.6)):
    """Exponential fracture hazards (true risk known) and a risk on the cloglog scale
    ``c + d * cloglog(true)``: over-confident (d > 1) and too high (c > 0)."""
    rng = np.random.default_rng(seed)
    rate = 0.03 * np.exp(0.9 * rng.standard_normal(n))
    t_f, t_c = rng.exponential(1 / rate), rng.uniform(2.0, 9.0, n)
    time, event = np.minimum(t_f, t_c), (t_f <= t_c).astype(int)
    years = np.arange(1, YEARS + 1)
    true = -np.expm1(-rate[:, None] * years[None, :])
    c, d = distort
    risk = -np.expm1(-np.exp(c + d * np.log(-np.log1p(-true))))
    examples = [
        Example(f"p{i}", f"s{i}", "dev", Path("none.npz"), 0, float(time[i]), int(event[i]))
        for i in range(n)
    ]
    preds = [Prediction(f"s{i}", 0.5, tuple(risk[i])) for i in range(n)]
    return examples, preds


def _slope(examples: list[Example], preds: list[Prediction]) -> float:
    target = SurvivalTarget.from_arrays(
        [e.followup_years for e in examples], [e.event for e in examples]
    )
    return calibration(target, [p.risk[YEARS - 1] for p in preds], float(YEARS)).slope


def test_fit_and_apply_undo_a_known_distortion() -> None:
    examples, preds = _cohort(4000, seed=1)
    assert _slope(examples, preds) == pytest.approx(1 / 1.6, rel=0.15)
    r = recalibration.fit(examples, preds, YEARS)
    assert r.slope == pytest.approx(1 / 1.6, rel=0.15)
    assert r.intercept == pytest.approx(-0.4 / 1.6, abs=0.15)
    fixed = recalibration.apply(preds, r)
    assert _slope(examples, fixed) == pytest.approx(1.0, abs=1e-6)  # in-sample, by design
    for before, after in zip(preds, fixed, strict=True):
        assert np.all(np.diff(after.risk) >= 0)  # still monotone in t
        assert after.series_uid == before.series_uid and after.p_fracture == before.p_fracture
    # every year by the head's formula, 1 - exp(-exp(a) * H^b) with H = -log(1 - risk)
    h = -np.log1p(-np.array(preds[0].risk))
    expected = -np.expm1(-math.exp(r.intercept) * h**r.slope)
    np.testing.assert_allclose(fixed[0].risk, expected, rtol=1e-12)


def test_cross_fitted_parts_are_fitted_on_the_others() -> None:
    examples, preds = _cohort(300, seed=2)
    parts = [va for _, va in split_indices(examples, horizon=YEARS, seed=0, val_fraction=0.5,
                                           folds=3)]  # fmt: skip
    crossed = recalibration.cross_fitted(examples, preds, YEARS, parts)
    for here in parts:
        rest = np.setdiff1d(np.arange(len(examples)), here)
        r = recalibration.fit([examples[i] for i in rest], [preds[i] for i in rest], YEARS)
        expected = recalibration.apply([preds[i] for i in here], r)
        assert [crossed[i] for i in here] == expected
    # honest: not the in-sample slope of 1, but near it on a well-behaved cohort
    slope = _slope(examples, crossed)
    assert slope != pytest.approx(1.0, abs=1e-6) and 0.6 < slope < 1.6
    with pytest.raises(ValueError, match="cover"):
        recalibration.cross_fitted(examples, preds, YEARS, parts[:2])


def test_fit_refuses_what_it_cannot_recalibrate() -> None:
    examples, preds = _cohort(200, seed=3)
    late = [Example(e.patient_id, e.series_uid, e.site, e.cache_path, 0,
                    e.followup_years + 10, e.event) for e in examples]  # fmt: skip
    with pytest.raises(VfriskError, match="cannot be recalibrated") as err:
        recalibration.fit(late, preds, YEARS)  # no fracture within 5 years
    assert err.value.code == "recalibration_failed"
    censored = [Example(e.patient_id, e.series_uid, e.site, e.cache_path, 0,
                        e.followup_years, 0) for e in examples]  # fmt: skip
    with pytest.raises(VfriskError, match="cannot be recalibrated") as err:
        recalibration.fit(censored, preds, YEARS)  # no fracture at all
    assert err.value.code == "recalibration_failed"
    reversed_preds = [Prediction(p.series_uid, None, tuple(1 - np.array(p.risk[::-1])) )
                      for p in preds]  # fmt: skip
    with pytest.raises(VfriskError, match="does not rank") as err:
        recalibration.fit(examples, reversed_preds, YEARS)
    assert err.value.code == "recalibration_failed"


def _request(tmp_path: Path) -> TrainRequest:
    return TrainRequest(db=tmp_path / "none.duckdb", out=tmp_path / "m.pt", seed=0)


def test_trainer_stores_the_fit_in_the_head_and_reports_it_cross_fitted(tmp_path: Path) -> None:
    examples, preds = _cohort(400, seed=4)
    ((tr, va),) = split_indices(examples, horizon=YEARS, seed=0, val_fraction=0.5, folds=None)
    fit = _Fit(state={}, best_epoch=1, best_metric=0.7, history=[],
               val_predictions=[preds[i] for i in va])  # fmt: skip
    torch.manual_seed(0)
    model = FractureNet(ModelConfig(width=8, depth=(1, 1), triplets_per_level=1))
    raw = {"calibration_5y": {"slope": {"estimate": 0.6}}, "notes": []}
    lines: list[str] = []
    _recalibrate(_request(tmp_path), model, examples, [(tr, va)], [fit], 0, raw, 0.05,
                 lines.append)  # fmt: skip
    val = [examples[i] for i in va]
    expected = recalibration.fit(val, fit.val_predictions, YEARS)
    torch.testing.assert_close(
        model.survival.recalibration, torch.tensor([expected.intercept, expected.slope])
    )
    assert raw["calibration_5y_uncalibrated"] == {"slope": {"estimate": 0.6}}
    assert raw["recalibration"]["patients"] == len(va) == 200
    assert raw["recalibration"]["slope"] == pytest.approx(expected.slope, abs=1e-6)
    parts = split_indices(val, horizon=YEARS, seed=0, val_fraction=0.5, folds=5)
    crossed = recalibration.cross_fitted(val, fit.val_predictions, YEARS, [p for _, p in parts])
    assert raw["calibration_5y"]["slope"]["estimate"] == pytest.approx(
        _slope(val, crossed), abs=1e-4
    )
    assert "recalibrated the 5-year risk on 200 validation patients" in lines[0]
    (text,) = _recalibration_lines(raw)  # the card's sentence
    assert "fitted on the 200 validation patients" in text and "cross-fitted" in text
    assert "before recalibration: slope 0.600" in text


def test_trainer_leaves_the_head_alone_when_the_fit_fails(tmp_path: Path) -> None:
    examples, preds = _cohort(100, seed=5)
    none = [Example(e.patient_id, e.series_uid, e.site, e.cache_path, 0, 7.0, 0)
            for e in examples]  # fmt: skip
    va = np.arange(100)
    fit = _Fit(state={}, best_epoch=1, best_metric=0.7, history=[], val_predictions=preds)
    model = FractureNet(ModelConfig(width=8, depth=(1, 1), triplets_per_level=1))
    metrics = {"calibration_5y": {"slope": {"estimate": 0.6}}, "notes": []}
    lines: list[str] = []
    _recalibrate(_request(tmp_path), model, none, [(va[:0], va)], [fit], 0, metrics, 0.05,
                 lines.append)  # fmt: skip
    assert torch.equal(model.survival.recalibration, torch.tensor([0.0, 1.0]))
    assert "recalibration" not in metrics and metrics["calibration_5y"]["slope"]["estimate"] == 0.6
    assert metrics["notes"] and "not recalibrated" in metrics["notes"][0] and lines
    assert _recalibration_lines(metrics) == []


def test_a_numerical_failure_costs_the_note_not_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import models.train

    examples, preds = _cohort(200, seed=6)
    ((tr, va),) = split_indices(examples, horizon=YEARS, seed=0, val_fraction=0.5, folds=None)
    fit = _Fit(state={}, best_epoch=1, best_metric=0.7, history=[],
               val_predictions=[preds[i] for i in va])  # fmt: skip

    def singular(*args: object, **kwargs: object) -> None:
        raise np.linalg.LinAlgError("Singular matrix")

    monkeypatch.setattr(models.train, "calibration_summary", singular)
    model = FractureNet(ModelConfig(width=8, depth=(1, 1), triplets_per_level=1))
    metrics: dict = {"calibration_5y": {"slope": {"estimate": 0.6}}, "notes": []}
    _recalibrate(_request(tmp_path), model, examples, [(tr, va)], [fit], 0, metrics, 0.05,
                 lambda _: None)  # fmt: skip
    assert torch.equal(model.survival.recalibration, torch.tensor([0.0, 1.0]))
    assert metrics["notes"] == ["not recalibrated: LinAlgError: Singular matrix"]
