"""Sensor consistency (analytical redundancy): each reading re-predicted from the other sensors.

The world model forecasts a step ahead from the past: it cannot tell a sensor that drifts from
a state that moves, since it sees the drifting reading in its own input and the next one differs
from its forecast by the drift's rate alone (0.05 m/s on a cart is 1.7 mm a step, a fifth of
the model's own one-step error there). The other sensors' *current* readings can: a cart's
position changes by what its velocity readings integrate to, a pole's angle by its rate. These
parity relations are learned, not written: per asset, from the detector's calibration steps, a
ridge least-squares fit for each sensor ``s`` of its change ``x_t[s] - x_{t-1}[s]`` (wrapped for
an angle) on the previous reading ``x_{t-1}`` and the other sensors' readings ``x_t[-s]`` (angles
as their sine and cosine). Its residual is near zero while the readings agree with one another
(on the cart-pole 0.55 mm for the position, 15x below the world model's one-step error) and
takes a drift's full rate, a bias's step or a stuck reading's whole motion when one sensor
departs from the rest; it points at that sensor.

:class:`~twin.worker.detector.Detector` turns the residuals into its ``consistency`` statistic
(their EWMAs, like ``ewma`` for the model's residuals). Linear and per asset on purpose: 30 s
of one asset fit it (a few features per sensor), it costs one small matrix product a step, and
it stays a relation between readings that an operator can read off. Actions are not among the
inputs: relations that need them (a velocity's change and the force) stay loose, and the
world model's own residuals watch those.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

RIDGE = 1e-6
"""Ridge penalty, relative to the mean squared (standardised) feature: only against collinearity."""
MIN_T = 8.0
"""A feature stays in a sensor's relation only if its t statistic reaches this (then the fit is
redone without the others): 30 s of one asset show spurious small weights on readings that
wander (a cart's position), and a spurious weight on a level that later leaves the calibration's
range becomes a bias. The relations worth checking are far stronger (a position's change on its
velocity: t in the hundreds)."""
MIN_R2 = 0.95
"""A relation is checked only if it explains at least this share of its sensor's change in
calibration: a parity relation (a position's change on its velocity, R^2 ~ 1.0), not a partial
model of a change driven by what no sensor shows (a velocity's change and the unmeasured force:
R^2 0.1-0.9 on the cart-pole), whose residual is the sensor's own dynamics, which the world
model's residuals watch already."""
MIN_ROWS = 20
"""Fewest calibration pairs (consecutive readings) that fit the relations."""


def _features(readings: np.ndarray, periodic: np.ndarray) -> np.ndarray:
    """Readings (..., S) -> features (..., F): each reading as it is, or an angle's sine and cosine."""
    cols = []
    for j in range(readings.shape[-1]):
        x = readings[..., j]
        cols.extend((np.sin(x), np.cos(x)) if periodic[j] else (x,))
    return np.stack(cols, axis=-1)


def _owners(periodic: np.ndarray) -> np.ndarray:
    """(F,) the sensor each feature column of :func:`_features` comes from."""
    return np.concatenate([[j, j] if p else [j] for j, p in enumerate(periodic)]).astype(int)


def _ridge(a: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standardised (centred) features (N, F) with the intercept last, target (N,) ->
    (coefficients (F,), their t statistics (F,)). A numerically singular system (features
    that are copies of one another beyond the ridge's reach) is solved by pseudo-inverse."""
    gram = a.T @ a
    penalty = RIDGE * len(a) * np.eye(len(gram))
    penalty[-1, -1] = 0.0  # the intercept is not shrunk
    try:
        inverse = np.linalg.inv(gram + penalty)
    except np.linalg.LinAlgError:
        inverse = np.linalg.pinv(gram + penalty, hermitian=True)
    coef = inverse @ (a.T @ y)
    dof = max(len(a) - len(coef), 1)
    sigma2 = float(np.sum((y - a @ coef) ** 2)) / dof
    se = np.sqrt(np.maximum(np.diag(inverse) * sigma2, 1e-300))
    return coef, coef / se


@dataclass(frozen=True, slots=True)
class Consistency:
    """The fitted relations of one asset: ``weights`` (S, 2F + 1) over ``[f(x_{t-1}), f(x_t),
    1]`` (zero on each sensor's own current reading), ``periodic`` (S,) which readings are
    wrapped angles (period 2 pi, SI), ``checked`` (S,) which sensors' relations are checked:
    those that moved in calibration and whose relation explained at least :data:`MIN_R2` of
    their change there."""

    weights: np.ndarray
    periodic: np.ndarray
    checked: np.ndarray

    def __post_init__(self) -> None:
        s = len(self.periodic)
        width = 2 * (s + int(np.count_nonzero(self.periodic))) + 1
        if self.weights.shape != (s, width) or self.checked.shape != (s,):
            raise ValueError(
                f"Consistency: weights {self.weights.shape} and checked {self.checked.shape} do not fit "
                f"{s} sensors ({int(np.count_nonzero(self.periodic))} periodic): expected ({s}, {width})"
            )

    @staticmethod
    def _design(previous: np.ndarray, current: np.ndarray, periodic: np.ndarray) -> np.ndarray:
        ones = np.ones((*previous.shape[:-1], 1))
        return np.concatenate([_features(previous, periodic), _features(current, periodic), ones], axis=-1)

    @staticmethod
    def _change(previous: np.ndarray, current: np.ndarray, periodic: np.ndarray) -> np.ndarray:
        change = current - previous
        return np.where(periodic, change - 2 * np.pi * np.round(change / (2 * np.pi)), change)

    @classmethod
    def fit(cls, previous: np.ndarray, current: np.ndarray, periodic: np.ndarray) -> Consistency | None:
        """From pairs of consecutive readings (N, S) SI (rows with a non-finite value are left
        out): the relations, or None with fewer than :data:`MIN_ROWS` pairs."""
        periodic = np.asarray(periodic, dtype=bool)
        ok = np.isfinite(previous).all(axis=1) & np.isfinite(current).all(axis=1)
        if ok.sum() < MIN_ROWS:
            return None
        x = cls._design(previous[ok], current[ok], periodic)
        y = cls._change(previous[ok], current[ok], periodic)
        s = y.shape[1]
        f = _features(previous[:1], periodic).shape[-1]
        own = _owners(periodic)
        # standardised about their means, so a reading that barely moves about a level far from
        # zero (an angle's cosine near 1) is not a scaled copy of the intercept column
        centre = x.mean(axis=0)
        spread = x.std(axis=0)
        centre[-1], spread[-1] = 0.0, 1.0  # the intercept
        usable = spread > 1e-12 * np.maximum(1.0, np.abs(centre))
        usable[-1] = True
        weights = np.zeros((s, x.shape[1]))
        checked = y.std(axis=0) > 1e-12
        for k in range(s):
            cols = usable.copy()
            cols[f:-1] &= own != k  # not the sensor's own current reading
            while True:  # fit, drop the features that are not significant, fit again
                coef, t = _ridge((x[:, cols] - centre[cols]) / spread[cols], y[:, k])
                weak = np.abs(t) < MIN_T
                weak[-1] = False  # the intercept stays
                if not weak.any():
                    break
                cols[np.flatnonzero(cols)[weak]] = False
            weights[k, cols] = coef / spread[cols]
            weights[k, -1] -= float(np.dot(coef, centre[cols] / spread[cols]))  # back from centred
        if checked.any():
            residual = y - x @ weights.T
            explained = 1 - residual.var(axis=0) / np.maximum(y.var(axis=0), 1e-300)
            checked &= explained >= MIN_R2
        return cls(weights, periodic, checked)

    def residuals(self, previous: np.ndarray, current: np.ndarray) -> np.ndarray:
        """Consecutive readings (..., S) SI -> (..., S): each sensor's change minus what the
        relations expect of it (0 for sensors not :attr:`checked`)."""
        change = self._change(previous, current, self.periodic)
        expected = self._design(previous, current, self.periodic) @ self.weights.T
        return np.where(self.checked, change - expected, 0.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "weights": self.weights.tolist(),
            "periodic": self.periodic.tolist(),
            "checked": self.checked.tolist(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Consistency:
        return cls(
            np.asarray(data["weights"], dtype=np.float64),
            np.asarray(data["periodic"], dtype=bool),
            np.asarray(data["checked"], dtype=bool),
        )
