"""Surprise: how unexpected an observation is given the prediction made one step earlier.

Two kinds of evidence, combined by :mod:`twin.worker.detector` after per-asset calibration:

* sensor space: ``residual`` (S,) = (observed - predicted) / training std per sensor (angles
  wrapped), where ``predicted`` is the model's one-step forecast read out in sensor units;
* latent space: ``latent`` = RMS distance per dimension between the encoding of the window
  ending at the observation and the latent the predictor expected.

A prototype found the sensor-space residual catches faults within 1-5 steps, while latent-only
surprise is heavy-tailed and slow; both are kept, calibrated separately.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Surprise:
    """Raw (uncalibrated) evidence of one control step of one asset."""

    residual: np.ndarray
    latent: float


def surprise_batch(residuals: np.ndarray, z: np.ndarray, predicted_z: np.ndarray) -> list[Surprise]:
    """Residuals (B, S) normalised, encodings (B, D), expected latents (B, D) -> B surprises."""
    latent = np.sqrt(np.mean((z - predicted_z) ** 2, axis=1))
    return [Surprise(residuals[i], float(latent[i])) for i in range(len(latent))]
