"""Horizon blend: a per-(horizon, feature) linear correction of the model's predicted features.

A rollout read ``h`` steps ahead is, per feature ``f``, replaced by

    y[h, f] = a[h, f] * predicted[h, f] + b[h, f] * present[f] + c[h, f]

where ``present`` is the model's reading of the latent it started from (with a carrying latent,
exactly the last observed features; camera-only columns: the readout's estimate of now). It lets
a forecast lean on persistence where the model's own rollout is worse (objects that mostly sit
still) and shrink toward the mean where a phase is lost (the rotor's aliased vibration at 50
steps), while leaving features the model predicts well at ``(a, b, c) = (1, 0, 0)``.

The weights are fitted after training on held-out windows (the validation episodes, never used to
fit the network's weights) by ridge least squares on centred data: ``(a, b)`` pulled toward
``(1, 0)`` (the rollout as read, :data:`PULLS`) or toward ``(0, 1)`` (the present's reading,
:data:`PRESENT_PULLS`), ``c`` from the means. The candidate is chosen per ``(h, f)`` by
two-fold cross-validation (windows of one half of the episodes against the other's), pull
``inf`` meaning "no blend" there, so a cell is only blended where that measurably helped on
windows it was not fitted on. A feature the held-out windows barely saw move at a horizon
(variance below :data:`MIN_VARIANCE` of its training variance: a cube that never left the table
in them) is not blended there: nothing says how it behaves when it does. Conformal bands are
calibrated on their own episodes after it, so they cover the blended forecast. Features in
normalised units; shapes in docstrings.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

__all__ = ["MIN_WINDOWS", "PRESENT_PULLS", "PULLS", "HorizonBlend", "fit_blend"]

PULLS = (1e-3, 1e-2, 1e-1, 1.0, math.inf)
"""Ridge strengths toward no blend tried per cell, relative to the windows' count times the
feature's training variance (a pull of 1 weighs as much as data of the training spread)."""

PRESENT_PULLS = (1e-2, 1e-1, 1.0, 10.0, 100.0)
"""Ridge strengths toward the present's reading, ``(a, b) = (0, 1)`` (at 100 nearly that alone,
``c`` correcting the mean), tried per cell beside :data:`PULLS`. Where an object mostly sits
still, the rollout and the present are nearly collinear and a fit pulled toward the rollout
kept a rollout that drifts on the windows it was not fitted on: the arm's camera, seed 1,
cubes' x and y at 10 steps, probe R^2 0.906 -> 0.912 with these candidates (docs/model.md,
"The arm's camera")."""

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

    @property
    def horizon(self) -> int:
        return self.weights.shape[0]

    def forward(self, predicted: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """predicted (B, H', F) read from a rollout, present (B, F) -> blended (B, H', F)."""
        steps = predicted.shape[1]
        rows = torch.arange(steps, device=self.weights.device).clamp(max=self.horizon - 1)
        w = self.weights[rows]  # (H', F, 3)
        return w[..., 0] * predicted + w[..., 1] * present[:, None] + w[..., 2]


MIN_VARIANCE = 0.01
"""Held-out variance (of the observed feature h steps ahead, in training variances) below which
a cell is left unblended."""


def _solve(
    predicted: np.ndarray,
    present: np.ndarray,
    observed: np.ndarray,
    pull: float,
    variance: np.ndarray,
    prior: tuple[float, float] = (1.0, 0.0),
) -> np.ndarray:
    """Ridge weights (H, F, 3) from windows (N, H, F), (N, F), (N, H, F): ``(a, b)`` on the
    centred columns pulled toward ``prior`` (no blend, or (0, 1): the present) with strength
    ``pull * N * variance[f]`` (the feature's training variance), ``c`` so the means match.
    ``pull`` inf: no blend."""
    n, h, f = predicted.shape
    weights = np.zeros((h, f, 3))
    weights[..., 0] = 1.0
    if math.isinf(pull):
        return weights
    now = np.broadcast_to(present[:, None], predicted.shape)
    mean_p, mean_l, mean_y = predicted.mean(0), now.mean(0), observed.mean(0)
    p, q, y = predicted - mean_p, now - mean_l, observed - mean_y
    gram = np.empty((h, f, 2, 2))
    gram[..., 0, 0], gram[..., 1, 1] = (p * p).sum(0), (q * q).sum(0)
    gram[..., 0, 1] = gram[..., 1, 0] = (p * q).sum(0)
    strength = (pull * n * variance)[None, :, None]  # (1, F, 1)
    rhs = np.stack([(p * y).sum(0), (q * y).sum(0)], axis=-1) + strength * np.array(prior)
    ab = np.linalg.solve(gram + strength[..., None] * np.eye(2), rhs[..., None])[..., 0]
    weights[..., :2] = ab
    weights[..., 2] = mean_y - ab[..., 0] * mean_p - ab[..., 1] * mean_l
    return weights


def _apply(w: np.ndarray, predicted: np.ndarray, present: np.ndarray) -> np.ndarray:
    return w[None, ..., 0] * predicted + w[None, ..., 1] * present[:, None] + w[None, ..., 2]


def fit_blend(
    predicted: np.ndarray,
    present: np.ndarray,
    observed: np.ndarray,
    pulls: tuple[float, ...] = PULLS,
    variance: np.ndarray | None = None,
    split: int | None = None,
    present_pulls: tuple[float, ...] = PRESENT_PULLS,
) -> tuple[HorizonBlend, dict[str, object]]:
    """Fit a :class:`HorizonBlend` on held-out windows.

    ``predicted`` (N, H, F): the model's features read from its rollout; ``present`` (N, F): read
    from the starting latent; ``observed`` (N, H, F): the observed features. ``pulls`` (toward
    no blend) must end with ``inf`` (no blend); ``present_pulls``: toward the present (empty:
    none). ``variance`` (F,): each feature's training variance (default 1: normalised features;
    an angle's sin and cos have less). ``split``: where the second fold starts (windows before
    it from other episodes than those after; default N // 2).
    Returns the blend and a report: the cells and features blended (``toward_present_cells``:
    of them, those pulled toward the present), the pull chosen per feature at horizons 1, 10
    and 50 (None: not blended; a pull toward the present as ``"present <pull>"``), and the
    cross-validated mean squared error (normalised units) without the blend and with the pulls
    it selected (a selection score: the same folds chose them)."""
    predicted, present, observed = (np.asarray(a, dtype=np.float64) for a in (predicted, present, observed))
    n, h, f = predicted.shape
    if n < MIN_WINDOWS:
        raise ValueError(f"fit_blend needs at least {MIN_WINDOWS} windows, got {n}")
    if not math.isinf(pulls[-1]):
        raise ValueError("fit_blend: the last pull must be inf (no blend)")
    if not all(math.isfinite(p) and p > 0 for p in present_pulls):
        raise ValueError(f"fit_blend: present_pulls={present_pulls!r} must be finite numbers > 0")
    variance = np.ones(f) if variance is None else np.maximum(np.asarray(variance, dtype=np.float64), 1e-12)
    half = n // 2 if split is None else int(split)
    if not 0 < half < n:
        raise ValueError(f"fit_blend: split={split!r} must leave windows on both sides of {n}")
    folds = ((slice(0, half), slice(half, n)), (slice(half, n), slice(0, half)))
    toward_model, toward_present = (1.0, 0.0), (0.0, 1.0)
    candidates = [(pull, toward_model) for pull in pulls[:-1]]
    candidates += [(pull, toward_present) for pull in present_pulls]
    candidates.append((math.inf, toward_model))  # no blend, last
    cv = np.zeros((len(candidates), h, f))  # squared error per candidate and (horizon, feature)
    for fit_rows, score_rows in folds:
        for k, (pull, prior) in enumerate(candidates):
            w = _solve(predicted[fit_rows], present[fit_rows], observed[fit_rows], pull, variance, prior)
            error = _apply(w, predicted[score_rows], present[score_rows]) - observed[score_rows]
            cv[k] += (error**2).sum(axis=0)
    none = len(candidates) - 1
    choice = cv.argmin(axis=0)
    choice[np.isclose(cv.min(axis=0), cv[none])] = none  # a tie is no reason to blend
    choice[observed.var(axis=0) < MIN_VARIANCE * variance] = none
    weights = np.empty((h, f, 3))
    for k, (pull, prior) in enumerate(candidates):
        chosen = choice == k
        if chosen.any():
            weights[chosen] = _solve(predicted, present, observed, pull, variance, prior)[chosen]
    picked = np.take_along_axis(cv, choice[None], axis=0)[0]
    present_rows = np.array([prior == toward_present for _, prior in candidates])

    def named(k: int) -> float | str | None:
        pull, prior = candidates[k]
        return None if k == none else f"present {pull:g}" if prior == toward_present else pull

    report: dict[str, object] = {
        "windows": n,
        "blended_cells": int((choice != none).sum()),
        "blended_features": int((choice != none).any(axis=0).sum()),
        "toward_present_cells": int(present_rows[choice].sum()),
        "pull_h1_h10_h50": [[named(choice[s, j]) for s in (0, 9, 49) if s < h] for j in range(f)],
        "cv_mse_unblended": round(float(cv[none].sum() / (n * h * f)), 6),
        "cv_mse_selected": round(float(picked.sum() / (n * h * f)), 6),
    }
    return HorizonBlend(torch.from_numpy(weights)), report
