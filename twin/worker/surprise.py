"""Surprise: how unexpected an observation is given the prediction made one step earlier.

Three kinds of evidence, combined by :mod:`twin.worker.detector` after per-asset calibration:

* sensor space: ``residual`` (S,) = (observed - predicted) / training std per sensor (angles
  wrapped), where ``predicted`` is the model's one-step forecast read out in sensor units;
* latent space: ``latent`` = RMS distance per dimension between the encoding of the window
  ending at the observation and the latent the predictor expected;
* the raw reading ``observed`` (S,) SI, from which the detector sees a sensor that stops moving.

A prototype found the sensor-space residual catches faults within 1-5 steps, while latent-only
surprise is heavy-tailed and slow; all are kept, calibrated separately.

:func:`step_evidence` is the one computation of evidence used by the live loop
(:class:`twin.worker.loop.TwinWorker`) and by the offline replay (:mod:`twin.worker.replay`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Surprise:
    """Raw (uncalibrated) evidence of one control step of one asset."""

    residual: np.ndarray
    latent: float
    observed: np.ndarray | None = None
    step: int | None = None
    """The asset's control-step count at this observation: when the worker fell behind and
    several steps passed since the prediction, the evidence is not a one-step residual."""
    periods: np.ndarray | None = None
    """(S,) period of each residual in its units (an angle's 2 pi / std; inf: not periodic): a
    wrapped residual that crosses +-pi is not a jump."""


def step_evidence(
    normalised_error: Callable[[np.ndarray, np.ndarray], np.ndarray],
    predicted_values: np.ndarray,
    observed: np.ndarray,
    z: np.ndarray,
    predicted_z: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """For B assets: one-step predictions (B, S) SI, observations (B, S) SI, encodings (B, D) of
    the windows ending at them and the latents predicted a step earlier (B, D) ->
    (residuals (B, S) in training stds, latent distances (B,))."""
    residuals = normalised_error(predicted_values, observed)
    latent = np.sqrt(np.mean((np.asarray(z, np.float64) - predicted_z) ** 2, axis=-1))
    return residuals, latent
