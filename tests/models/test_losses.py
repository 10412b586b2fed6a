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


def test_survival_loss_against_hand_computed() -> None:
    # BCE(z, 1) = log(1 + e^-z), BCE(z, 0) = log(1 + e^z); with z = +-ln 3 these are
    # ln(4/3) or ln 4, and ln 2 at z = 0.
    lab = survival_labels(TIME[:3], EVENT[:3], 3)
    logits = torch.tensor([[LN3, 0.0, -LN3], [-LN3, -LN3, LN3], [LN3, 5.0, 5.0]])
    # A: y (0, 1, 1), cells ln 4 + ln 2 + ln 4; B: y (0, 0, 0): 2 ln(4/3) + ln 4;
    # C: y (0, -, -): ln 4
    expected = (LN4 + LN2 + LN4 + 2 * LN43 + LN4 + LN4) / 7
    loss = survival_loss(logits, lab.y_seq, lab.mask)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.973384, abs=1e-6)


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
