"""Losses and yearly survival labels against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.losses import detection_loss, survival_labels, survival_loss

LN2, LN3, LN4, LN43 = math.log(2), math.log(3), math.log(4), math.log(4 / 3)

# Six patients, horizon T = 3 years (columns: by year 1, 2, 3)
TIME = [1.4, 2.5, 0.5, 4.2, 0.0, 1.0]
EVENT = [1, 0, 2, 1, 1, 0]


def test_survival_labels_against_hand_computed() -> None:
    # Reference: Mirai get_label with years = floor(time) (days // 365), worked by hand,
    # except that a fracture is supervised in every bin (Mirai masks those after it):
    # A fracture at 1.4 y -> bin 1: y (0, 1, 1), supervised bins 0..2
    # B censored at 2.5 y -> bin 2: y 0, supervised 0..2 (last partial year counts)
    # C death at 0.5 y = censored at 0.5 -> bin 0: y 0, supervised 0
    # D fracture at 4.2 y, beyond T -> censored at T: y 0, supervised 0..2
    # E fracture at 0.0 y -> bin 0: y (1, 1, 1), supervised 0..2
    # F censored at exactly 1.0 y -> bin 1: supervised 0..1
    lab = survival_labels(TIME, EVENT, 3)
    np.testing.assert_array_equal(
        lab.y_seq, [[0, 1, 1], [0, 0, 0], [0, 0, 0], [0, 0, 0], [1, 1, 1], [0, 0, 0]]
    )
    np.testing.assert_array_equal(
        lab.mask, [[1, 1, 1], [1, 1, 1], [1, 0, 0], [1, 1, 1], [1, 1, 1], [1, 1, 0]]
    )
    np.testing.assert_array_equal(lab.time_bin, [2, 2, 0, 2, 2, 1])
    np.testing.assert_array_equal(lab.fracture, [True, False, False, False, True, False])
    assert lab.y_seq.dtype == np.float32 and lab.mask.dtype == np.float32


def test_survival_labels_strict_censoring_against_hand_computed() -> None:
    # only fully observed years of censored patients: B (2.5 y) years 1-2, C (0.5 y) none,
    # F (1.0 y) year 1; events unchanged, D (fracture after T) still censored at T
    lab = survival_labels(TIME, EVENT, 3, strict_censoring=True)
    np.testing.assert_array_equal(
        lab.mask, [[1, 1, 1], [1, 1, 0], [0, 0, 0], [1, 1, 1], [1, 1, 1], [1, 0, 0]]
    )
    np.testing.assert_array_equal(lab.y_seq, survival_labels(TIME, EVENT, 3).y_seq)


def test_survival_labels_refuse_bad_targets() -> None:
    with pytest.raises(ValueError, match="finite"):
        survival_labels([1.0, -0.5], [0, 1], 5)
    with pytest.raises(ValueError, match="event"):
        survival_labels([1.0, 2.0], [0, 3], 5)
    with pytest.raises(ValueError, match="1-D"):
        survival_labels([1.0, 2.0], [0], 5)


def test_bce_survival_loss_against_hand_computed() -> None:
    # BCE(z, 1) = log(1 + e^-z), BCE(z, 0) = log(1 + e^z); with z = +-ln 3 these are
    # ln(4/3) or ln 4, and ln 2 at z = 0.
    lab = survival_labels(TIME[:3], EVENT[:3], 3)
    logits = torch.tensor([[LN3, 0.0, -LN3], [-LN3, -LN3, LN3], [LN3, 5.0, 5.0]])
    # A: y (0, 1, 1), cells ln 4 + ln 2 + ln 4; B: y (0, 0, 0): 2 ln(4/3) + ln 4;
    # C: y (0, -, -): ln 4
    expected = (LN4 + LN2 + LN4 + 2 * LN43 + LN4 + LN4) / 7
    loss = survival_loss(logits, lab.y_seq, lab.mask, "bce")
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.973384, abs=1e-6)


def test_likelihood_survival_loss_against_hand_computed() -> None:
    # Cumulative risks F = sigmoid(logit): sigmoid(0) = 1/2, sigmoid(ln 3) = 3/4,
    # sigmoid(ln 7) = 7/8, sigmoid(-ln 3) = 1/4.
    # A fracture in bin 1, F = (1/2, 3/4, 7/8): -log(F_1 - F_0) = -log(1/4) = ln 4
    # B censored, last bin 2, same F: -log(1 - F_2) = ln 8
    # C death at 0.5 y = censored, last bin 0, F_0 = 1/4: -log(3/4) = ln(4/3)
    # E fracture in bin 0, F_0 = 1/4: -log(1/4) = ln 4
    # F censored at 1.0 y, last bin 1, F_1 = 1/2: ln 2
    rows = [0, 1, 2, 4, 5]
    lab = survival_labels([TIME[i] for i in rows], [EVENT[i] for i in rows], 3)
    logits = torch.tensor(
        [[0.0, LN3, math.log(7)], [0.0, LN3, math.log(7)], [-LN3, 0.0, 1.0],
         [-LN3, 0.0, 1.0], [-1.0, 0.0, 2.0]],
        requires_grad=True,
    )  # fmt: skip
    loss = survival_loss(logits, lab.y_seq, lab.mask)
    expected = (LN4 + math.log(8) + LN43 + LN4 + LN2) / 5
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    loss.backward()
    assert torch.all(torch.isfinite(logits.grad))


def test_likelihood_gives_the_kaplan_meier_risk_where_bce_overestimates() -> None:
    # One logit per year fitted freely to a cohort with heavy early censoring: the
    # likelihood's optimum is the Kaplan-Meier risk, BCE's the naive share of fractures
    # among those not censored before the year.
    # 10 patients, T = 2: 2 fractures in year 1, 4 censored during year 1 (at 0.5 y:
    # fracture-free in year 1, unknown in year 2), 1 fracture in year 2, 3 event-free
    times = [0.2, 0.4] + [0.5] * 4 + [1.5] + [2.5] * 3
    event = [1, 1] + [0] * 4 + [1] + [0] * 3
    lab = survival_labels(times, event, 2)
    km = 1 - (1 - 2 / 10) * (1 - 1 / 4)  # at risk 10 in year 1, 4 in year 2: 0.4
    naive = 3 / 6  # year 2: 3 fractured of the 6 followed through it
    for kind, target in (("likelihood", km), ("bce", naive)):
        assert _fitted_risk(lab, kind)[1] == pytest.approx(target, abs=2e-3), kind
    assert _fitted_risk(lab, "likelihood")[0] == pytest.approx(2 / 10, abs=2e-3)


def _fitted_risk(lab: object, kind: str) -> tuple[float, float]:
    """Cumulative risk at years 1 and 2 of a two-logit model fitted to every patient."""
    base = torch.zeros(1, requires_grad=True)
    step = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([base, step], max_iter=200, line_search_fn="strong_wolfe")

    def logits() -> torch.Tensor:
        return torch.stack([base, base + torch.nn.functional.softplus(step)], dim=1)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        n = lab.y_seq.shape[0]
        loss = survival_loss(logits().expand(n, 2), lab.y_seq, lab.mask, kind)
        loss.backward()
        return loss

    opt.step(closure)
    risk = torch.sigmoid(logits()).detach()[0]
    return float(risk[0]), float(risk[1])


def test_unknown_survival_loss_is_refused() -> None:
    with pytest.raises(ValueError, match="hinge"):
        survival_loss(torch.zeros(1, 2), np.zeros((1, 2)), np.ones((1, 2)), "hinge")


def test_survival_loss_with_nothing_supervised_is_zero_with_graph() -> None:
    logits = torch.zeros(2, 3, requires_grad=True)
    loss = survival_loss(logits, np.zeros((2, 3)), np.zeros((2, 3)))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros(2, 3))


def test_detection_loss_against_hand_computed() -> None:
    logits = torch.tensor([LN3, -LN3, 0.0])
    labels = [1, 1, 0]
    # ln(4/3) + ln 4 + ln 2 over 3; pos_weight 2 doubles the positive terms
    assert detection_loss(logits, labels).item() == pytest.approx((LN43 + LN4 + LN2) / 3, abs=1e-6)
    weighted = detection_loss(logits, labels, pos_weight=2.0).item()
    assert weighted == pytest.approx((2 * LN43 + 2 * LN4 + LN2) / 3, abs=1e-6)
