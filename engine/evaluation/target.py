"""The survival target of every metric: ``(time, event)`` validated once, at the boundary.

``time`` is follow-up in years (float, >= 0); ``event`` is 0 censored, 1 the event of
interest (incident vertebral fracture) and 2 a competing event (death before fracture),
the coding of ``event_type`` in the synthetic clinical table. Metrics take a
:class:`SurvivalTarget` and trust it; scores are checked by :func:`check_scores`.
(Pattern: scikit-survival ``Surv.from_arrays`` / ``check_y_survival``.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.errors import VfriskError

__all__ = ["CENSORED", "COMPETING", "EVENT", "SurvivalTarget", "check_horizons", "check_scores"]

CENSORED, EVENT, COMPETING = 0, 1, 2


def _fail(message: str) -> VfriskError:
    return VfriskError("bad_argument", message)


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


@dataclass(frozen=True)
class SurvivalTarget:
    """Validated follow-up time and event type, one entry per patient.

    Attributes
    ----------
    time : numpy.ndarray, shape (n,), float64
        Follow-up in years from the scan to fracture, death or censoring, >= 0.
    event : numpy.ndarray, shape (n,), int64
        0 censored, 1 fracture (event of interest), 2 competing death.
    """

    time: np.ndarray
    event: np.ndarray

    @classmethod
    def from_arrays(cls, time: object, event: object) -> SurvivalTarget:
        """Validate ``time`` (years) and ``event`` (0/1/2) and build the target.

        Parameters
        ----------
        time : array_like, shape (n,)
            Follow-up in years; finite and >= 0.
        event : array_like, shape (n,)
            Integer event type in {0, 1, 2}; booleans are read as 0/1.

        Raises
        ------
        VfriskError
            ``bad_argument`` for NaN/infinite or negative times, event codes outside
            {0, 1, 2}, arrays of different length or not one-dimensional, an empty target
            or a target without a single event of interest (code 1).
        """
        try:
            t = np.asarray(time, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise _fail(f"follow-up time must be numeric (years): {exc}") from None
        try:
            e_raw = np.asarray(event, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise _fail(f"event must be integer codes 0/1/2: {exc}") from None
        if t.ndim != 1 or e_raw.ndim != 1:
            raise _fail(
                f"time and event must be one-dimensional, got shapes {t.shape} and {e_raw.shape}"
            )
        if t.shape != e_raw.shape:
            raise _fail(
                f"time and event differ in length ({t.size} vs {e_raw.size}); "
                "give one entry per patient in both"
            )
        if t.size == 0:
            raise _fail("the survival target is empty; at least one patient is needed")
        if not np.isfinite(t).all():
            i = _first_bad(~np.isfinite(t))
            raise _fail(
                f"follow-up time is NaN or infinite for {int((~np.isfinite(t)).sum())} "
                f"patient(s) (first at row {i}: {t[i]!r}); fill or drop them before evaluation"
            )
        if (t < 0).any():
            i = _first_bad(t < 0)
            raise _fail(
                f"follow-up time is negative for {int((t < 0).sum())} patient(s) (first at "
                f"row {i}: {t[i]!r} years); time counts from the scan and must be >= 0"
            )
        bad = ~np.isin(e_raw, (CENSORED, EVENT, COMPETING))
        if bad.any():
            i = _first_bad(bad)
            raise _fail(
                f"event codes must be 0 (censored), 1 (fracture) or 2 (competing death); "
                f"{int(bad.sum())} row(s) differ (first at row {i}: {e_raw[i]!r})"
            )
        e = e_raw.astype(np.int64)
        if not (e == EVENT).any():
            raise _fail(
                f"no event of interest (code 1) among {e.size} patients; "
                "survival metrics need at least one fracture"
            )
        t.setflags(write=False)
        e.setflags(write=False)
        return cls(time=t, event=e)

    @property
    def n(self) -> int:
        """Number of patients."""
        return int(self.time.size)

    @property
    def n_events(self) -> int:
        """Number of events of interest (code 1)."""
        return int((self.event == EVENT).sum())

    @property
    def has_competing(self) -> bool:
        """Whether any competing event (code 2) is present."""
        return bool((self.event == COMPETING).any())

    @property
    def fracture(self) -> np.ndarray:
        """Event-of-interest indicator, shape (n,), bool (competing deaths are False)."""
        return self.event == EVENT

    def subset(self, index: np.ndarray) -> SurvivalTarget:
        """The target restricted to ``index`` (bool mask or integer positions), unchecked."""
        return SurvivalTarget(time=self.time[index], event=self.event[index])

    def to_sksurv(self) -> np.ndarray:
        """Structured array for scikit-survival, competing deaths as censored, shape (n,)."""
        y = np.empty(self.n, dtype=[("event", bool), ("time", np.float64)])
        y["event"] = self.fracture
        y["time"] = self.time
        return y


def check_scores(score: object, n: int, name: str = "score") -> np.ndarray:
    """Validate one risk score per patient (higher = higher risk).

    Parameters
    ----------
    score : array_like, shape (n,)
        Risk score or predicted probability; finite.
    n : int
        Expected length (patients in the target).
    name : str
        Name used in error messages.

    Returns
    -------
    numpy.ndarray, shape (n,), float64
    """
    try:
        s = np.asarray(score, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise _fail(f"{name} must be numeric: {exc}") from None
    if s.ndim != 1 or s.size != n:
        raise _fail(f"{name} must have shape ({n},) like the target, got {s.shape}")
    if not np.isfinite(s).all():
        i = _first_bad(~np.isfinite(s))
        raise _fail(f"{name} is NaN or infinite at row {i}; every patient needs a score")
    return s


def check_horizons(times: object) -> np.ndarray:
    """Validate evaluation horizons in years: finite, > 0, increasing; shape (k,)."""
    t = np.atleast_1d(np.asarray(times, dtype=np.float64))
    if t.ndim != 1 or t.size == 0 or not np.isfinite(t).all() or (t <= 0).any():
        raise _fail(f"horizons must be finite positive years, got {times!r}")
    if (np.diff(t) <= 0).any():
        raise _fail(f"horizons must be strictly increasing, got {times!r}")
    return t
