"""Pure numpy helpers behind the plots: past predictions against what happened, surprise, errors.

A prediction made at ``origin_t_ns`` for horizon ``h`` seconds is compared with the observation
at ``origin_t_ns + h`` (linearly interpolated between samples; NaN outside the observed span).
Surprise here is the sensor-space score of :meth:`twin.model.api.TwinModel.surprise`: the largest
``|observed - mean| / band half-width`` over sensors (> 1: outside the band), at the shortest
horizon. The twin's own published surprise, when there is one, is preferred by the pages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ui.live import PredictionRecord


@dataclass(frozen=True, slots=True)
class HorizonSlice:
    """Predictions for one horizon: ``target_t_ns`` (N,), ``mean``/``lower``/``upper`` (N, S)."""

    horizon_s: float
    target_t_ns: np.ndarray
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def horizons_of(predictions: Sequence[PredictionRecord]) -> list[float]:
    """The horizons (s) of the latest prediction, in order."""
    return [] if not predictions else [float(h) for h in predictions[-1].horizons_s]


def horizon_slice(predictions: Sequence[PredictionRecord], horizon_s: float) -> HorizonSlice:
    """From each prediction, the row of the horizon closest to ``horizon_s``."""
    targets, means, lows, highs = [], [], [], []
    for p in predictions:
        if len(p.horizons_s) == 0:
            continue
        k = int(np.argmin(np.abs(p.horizons_s - horizon_s)))
        targets.append(p.origin_t_ns + round(float(p.horizons_s[k]) * 1e9))
        means.append(p.mean[k])
        lows.append(p.lower[k])
        highs.append(p.upper[k])
    if not targets:
        empty = np.zeros((0, 0))
        return HorizonSlice(horizon_s, np.zeros(0, dtype=np.int64), empty, empty, empty)
    return HorizonSlice(
        horizon_s, np.array(targets, dtype=np.int64), np.array(means), np.array(lows), np.array(highs)
    )


def observed_at(t_ns: np.ndarray, values: np.ndarray, targets_ns: np.ndarray) -> np.ndarray:
    """Observed values (len(targets), S) at ``targets_ns``, interpolated; NaN outside the span."""
    out = np.full((len(targets_ns), values.shape[1] if values.ndim == 2 else 0), np.nan)
    if len(t_ns) < 2 or len(targets_ns) == 0:
        return out
    x = (t_ns - t_ns[0]).astype(np.float64)
    xt = (targets_ns - t_ns[0]).astype(np.float64)
    inside = (xt >= x[0]) & (xt <= x[-1])
    for s in range(values.shape[1]):
        out[inside, s] = np.interp(xt[inside], x, values[:, s])
    return out


def surprise_series(
    predictions: Sequence[PredictionRecord], t_ns: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(t_ns, score)``: per prediction, max over sensors of |error| / band half-width at the
    shortest horizon, where the observation has arrived."""
    if not predictions:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    first = float(np.min(predictions[-1].horizons_s)) if len(predictions[-1].horizons_s) else 0.0
    cut = horizon_slice(predictions, first)
    if cut.mean.size == 0 or values.ndim != 2 or cut.mean.shape[1] != values.shape[1]:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    observed = observed_at(t_ns, values, cut.target_t_ns)
    half = np.maximum((cut.upper - cut.lower) / 2.0, 1e-9)
    ratio = np.abs(observed - cut.mean) / half
    known = ~np.isnan(ratio).all(axis=1)
    score = np.nanmax(np.where(np.isnan(ratio), -np.inf, ratio), axis=1)
    return cut.target_t_ns[known], score[known]


@dataclass(frozen=True, slots=True)
class HorizonError:
    """Error statistics of one horizon over a set of predictions, per sensor."""

    horizon_s: float
    n: int
    mae: np.ndarray
    rmse: np.ndarray
    coverage: np.ndarray
    """Fraction of observations inside [lower, upper]."""


def horizon_errors(
    predictions: Sequence[PredictionRecord], t_ns: np.ndarray, values: np.ndarray
) -> list[HorizonError]:
    """Per horizon of the predictions: MAE, RMSE and band coverage against the observations."""
    out = []
    for h in horizons_of(predictions):
        cut = horizon_slice(predictions, h)
        if cut.mean.size == 0 or values.ndim != 2 or cut.mean.shape[1] != values.shape[1]:
            continue
        observed = observed_at(t_ns, values, cut.target_t_ns)
        known = ~np.isnan(observed).any(axis=1)
        if not known.any():
            continue
        error = observed[known] - cut.mean[known]
        inside = (observed[known] >= cut.lower[known]) & (observed[known] <= cut.upper[known])
        out.append(
            HorizonError(
                h,
                int(known.sum()),
                np.mean(np.abs(error), axis=0),
                np.sqrt(np.mean(error**2, axis=0)),
                np.mean(inside, axis=0),
            )
        )
    return out
