from __future__ import annotations

import numpy as np
import pytest

from engine.errors import VfriskError
from engine.evaluation import SurvivalTarget, harrell_c


@pytest.mark.parametrize(
    ("time", "event", "words"),
    [
        ([1.0, np.nan, 2.0], [1, 0, 1], "NaN"),
        ([1.0, -0.5, 2.0], [1, 0, 1], "negative"),
        ([1.0, 2.0, 3.0], [1, 3, 0], "event codes"),
        ([1.0, 2.0, 3.0], [1, 0], "differ in length"),
        ([1.0, 2.0, 3.0], [0, 2, 0], "no event of interest"),
        ([], [], "empty"),
        ([[1.0, 2.0]], [[1, 0]], "one-dimensional"),
        (["a", "b"], [1, 0], "numeric"),
    ],
)
def test_bad_target_raises_bad_argument(time, event, words):
    with pytest.raises(VfriskError) as info:
        SurvivalTarget.from_arrays(time, event)
    assert info.value.code == "bad_argument"
    assert words in info.value.message


def test_target_is_read_only_and_counts_events():
    tg = SurvivalTarget.from_arrays([1.0, 2.0, 3.0, 0.0], [1, 2, 0, True])
    assert tg.n == 4 and tg.n_events == 2 and tg.has_competing
    with pytest.raises(ValueError):
        tg.time[0] = 5.0
    assert tg.to_sksurv()["event"].tolist() == [True, False, False, True]


def test_bad_scores_raise_bad_argument():
    tg = SurvivalTarget.from_arrays([1.0, 2.0, 3.0], [1, 0, 1])
    with pytest.raises(VfriskError, match="NaN"):
        harrell_c(tg, [0.1, np.nan, 0.3])
    with pytest.raises(VfriskError, match="shape"):
        harrell_c(tg, [0.1, 0.3])
