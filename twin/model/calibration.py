"""Split-conformal prediction bands, calibrated on held-out episodes.

The model's variance head gives, for every predicted latent, an expected absolute error per
sensor ``scale`` (normalised units). On calibration episodes (never used for fitting) the score
``|observed - predicted| / (std * scale)`` is collected per horizon and sensor; its conformal
quantile ``q[h, s]`` (the ceil((n + 1) * level)-th smallest of n scores) makes the band
``predicted +- q[h, s] * scale * std`` cover a new observation with probability >= ``level``
when calibration and use are exchangeable (marginally, over episodes like the calibration ones).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class ConformalBands:
    """Per (horizon, sensor) multipliers of the error scale: ``quantiles`` (H, S) at ``level``."""

    level: float
    quantiles: np.ndarray
    n_calibration: int

    def __post_init__(self) -> None:
        if not 0 < self.level < 1:
            raise ValueError(f"ConformalBands.level={self.level!r} must be in (0, 1)")
        if self.quantiles.ndim != 2:
            raise ValueError(f"ConformalBands.quantiles must be (H, S), got {self.quantiles.shape}")

    @property
    def horizon(self) -> int:
        return self.quantiles.shape[0]

    def half_width(self, scale: np.ndarray, std: np.ndarray) -> np.ndarray:
        """Band half-widths in SI units (N, H, S) from error scales (N, H, S) and sensor std (S,)."""
        h = scale.shape[1]
        if h > self.horizon:
            raise ValueError(f"bands were calibrated up to {self.horizon} steps, asked for {h}")
        return self.quantiles[None, :h] * scale * std

    def coverage(self, normalised_error: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Fraction (H, S) of observations inside the band: |error| / std (N, H, S) vs scale."""
        h = scale.shape[1]
        return (np.abs(normalised_error) <= self.quantiles[None, :h] * scale).mean(axis=0)

    def to_dict(self) -> dict[str, object]:
        return {
            "level": self.level,
            "quantiles": self.quantiles.tolist(),
            "n_calibration": self.n_calibration,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> ConformalBands:
        return cls(float(d["level"]), np.asarray(d["quantiles"], dtype=np.float64), int(d["n_calibration"]))


def calibrate(normalised_error: np.ndarray, scale: np.ndarray, level: float = 0.9) -> ConformalBands:
    """Conformal quantiles from calibration errors (N, H, S) (already / std) and scales (N, H, S)."""
    scores = np.abs(normalised_error) / scale
    n = scores.shape[0]
    if n < 10:
        raise ValueError(f"need at least 10 calibration windows for {level:.0%} bands, got {n}")
    rank = min(n, math.ceil((n + 1) * level))
    quantiles = np.sort(scores, axis=0)[rank - 1]
    return ConformalBands(level, quantiles, n)
