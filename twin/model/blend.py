"""Horizon blend: a per-(horizon, feature) linear correction of the model's predicted features.

A rollout read ``h`` steps ahead is, per feature ``f``, replaced by

    y[h, f] = a[h, f] * predicted[h, f] + b[h, f] * present[f] + c[h, f]

where ``present`` is the model's reading of the latent it started from (with a carrying latent,
exactly the last observed features; camera-only columns: the readout's estimate of now). It lets
a forecast lean on persistence where the model's own rollout is worse (objects that mostly sit
still) and shrink toward the mean where a phase is lost (the rotor's aliased vibration at 50
steps), while leaving features the model predicts well at ``(a, b, c) = (1, 0, 0)``.

The weights are fitted after training on held-out windows (the validation episodes, never used to
fit the network's weights) by ridge least squares pulled toward ``(1, 0, 0)``: per feature, the
pull is chosen among :data:`PULLS` by two-fold cross-validation (first and second half of the
windows, which are ordered by episode), ``inf`` meaning "no blend" for that feature, so a
feature is only blended where it measurably helps on windows it was not fitted on. Conformal
bands are calibrated on their own episodes after it, so they cover the blended forecast.
Features in normalised units; shapes in docstrings.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

__all__ = ["MIN_WINDOWS", "PULLS", "HorizonBlend", "fit_blend"]

PULLS = (1e-3, 1e-2, 1e-1, 1.0, math.inf)
"""Ridge strengths toward ``(1, 0, 0)`` tried per feature, relative to the windows' count
(features have unit training variance, so a pull of 1 weighs as much as the data)."""

MIN_WINDOWS = 20
"""Fewer held-out windows than this fit no blend (two folds of ten are already a thin check)."""


class HorizonBlend(nn.Module):
    """``weights`` (H, F, 3): ``(a, b, c)`` per horizon step (1..H) and feature. Steps beyond H
    use the last row."""

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        if weights.ndim != 3 or weights.shape[-1] != 3:
            raise ValueError(f"HorizonBlend weights must be (H, F, 3), got {tuple(weights.shape)}")
        self.register_buffer("weights", weights.float())

    @classmethod
    def identity(cls, horizon: int, n_features: int) -> HorizonBlend:
        w = torch.zeros(horizon, n_features, 3)
        w[..., 0] = 1.0
        return cls(w)

    @property
    def horizon(self) -> int:
        return self.weights.shape[0]

    def forward(self, predicted: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """predicted (B, H', F) read from a rollout, present (B, F) -> blended (B, H', F)."""
        steps = predicted.shape[1]
        rows = torch.arange(steps).clamp(max=self.horizon - 1)
        w = self.weights[rows]  # (H', F, 3)
        return w[..., 0] * predicted + w[..., 1] * present[:, None] + w[..., 2]


def _solve(gram: np.ndarray, rhs: np.ndarray, n: int, pull: float) -> np.ndarray:
    """Ridge solutions toward (1, 0, 0): gram (H, F, 3, 3), rhs (H, F, 3) -> (H, F, 3)."""
    prior = np.array([1.0, 0.0, 0.0])
    if math.isinf(pull):
        return np.broadcast_to(prior, rhs.shape).copy()
    eye = np.eye(3) * pull * n
    return np.linalg.solve(gram + eye, (rhs + pull * n * prior)[..., None])[..., 0]


def _moments(predicted: np.ndarray, present: np.ndarray, observed: np.ndarray):
    """X^T X (H, F, 3, 3) and X^T y (H, F, 3) of the design [predicted, present, 1]."""
    n, h, f = predicted.shape
    x = np.stack([predicted, np.broadcast_to(present[:, None], (n, h, f)), np.ones((n, h, f))], axis=-1)
    return np.einsum("nhfi,nhfj->hfij", x, x), np.einsum("nhfi,nhf->hfi", x, observed)


def _apply(w: np.ndarray, predicted: np.ndarray, present: np.ndarray) -> np.ndarray:
    return w[None, ..., 0] * predicted + w[None, ..., 1] * present[:, None] + w[None, ..., 2]


def fit_blend(
    predicted: np.ndarray, present: np.ndarray, observed: np.ndarray, pulls: tuple[float, ...] = PULLS
) -> tuple[HorizonBlend, dict[str, object]]:
    """Fit a :class:`HorizonBlend` on held-out windows.

    ``predicted`` (N, H, F): the model's features read from its rollout; ``present`` (N, F): read
    from the starting latent; ``observed`` (N, H, F): the observed features. Returns the blend and
    a report: the pull chosen per feature, the features blended, and the cross-validated mean
    squared error (normalised units) without and with the blend."""
    predicted, present, observed = (np.asarray(a, dtype=np.float64) for a in (predicted, present, observed))
    n = len(predicted)
    if n < MIN_WINDOWS:
        raise ValueError(f"fit_blend needs at least {MIN_WINDOWS} windows, got {n}")
    half = n // 2
    folds = ((slice(0, half), slice(half, n)), (slice(half, n), slice(0, half)))
    cv = np.zeros((len(pulls), predicted.shape[2]))  # squared error per pull and feature
    for fit_rows, score_rows in folds:
        gram, rhs = _moments(predicted[fit_rows], present[fit_rows], observed[fit_rows])
        for k, pull in enumerate(pulls):
            w = _solve(gram, rhs, len(predicted[fit_rows]), pull)
            error = _apply(w, predicted[score_rows], present[score_rows]) - observed[score_rows]
            cv[k] += (error**2).sum(axis=(0, 1))
    choice = cv.argmin(axis=0)  # ties: the weaker pull listed first wins only if strictly better
    identity = len(pulls) - 1 if math.isinf(pulls[-1]) else None
    if identity is not None:
        same = np.isclose(cv[choice, np.arange(cv.shape[1])], cv[identity])
        choice[same] = identity
    gram, rhs = _moments(predicted, present, observed)
    weights = np.empty_like(rhs)
    for k, pull in enumerate(pulls):
        chosen = choice == k
        if chosen.any():
            weights[:, chosen] = _solve(gram[:, chosen], rhs[:, chosen], n, pull)
    count = n * predicted.shape[1]
    report: dict[str, object] = {
        "windows": n,
        "pull": [pulls[k] if math.isfinite(pulls[k]) else None for k in choice],
        "blended_features": int((choice != identity).sum()) if identity is not None else len(choice),
        "cv_mse_unblended": round(float(cv[identity].sum() / count / cv.shape[1]), 6)
        if identity is not None
        else None,
        "cv_mse_blended": round(float(cv[choice, np.arange(cv.shape[1])].sum() / count / cv.shape[1]), 6),
    }
    return HorizonBlend(torch.from_numpy(weights)), report
