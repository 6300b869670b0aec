"""Surprise: how unexpected an observation is given the prediction made one step earlier.

Three kinds of evidence, combined by :mod:`twin.worker.detector` after per-asset calibration:

* sensor space: ``residual`` (S,) = (observed - predicted) / training std per sensor (angles
  wrapped), where ``predicted`` is the model's one-step forecast read out in sensor units; with
  ``scale`` (the default detector's ``residual_units="predicted"``) further divided by the
  error the model itself expected for that prediction (its variance head's scale, in training
  stds): a heteroscedastic residual, near 1 wherever the model is as good as it thinks;
* latent space: ``latent`` = RMS distance per dimension between the encoding of the window
  ending at the observation and the latent the predictor expected;
* the raw reading ``observed`` (S,) SI, from which the detector sees a sensor that stops moving;
* open loop: ``horizons`` (K, S) = (observed - predicted) / training std, where ``predicted`` was
  rolled out from the latent ``k`` steps earlier through the actions applied since (known on the
  bus, else the ones inferred at each step), for each ``k`` of the detector's horizons. A fault
  that changes the dynamics a little per step (a heavier pole, a weaker actuator, friction)
  accumulates over ``k`` steps while the one-step residual hides it under the model's own
  error; this is what separates physical faults from nominal behaviour
  (:class:`OpenLoop` keeps the rollouts in flight per asset).

A prototype found the sensor-space residual catches faults within 1-5 steps, while latent-only
surprise is heavy-tailed and slow; all are kept, calibrated separately.

:func:`step_evidence` is the one computation of evidence used by the live loop
(:class:`twin.worker.loop.TwinWorker`) and by the offline replay (:mod:`twin.worker.replay`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

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
    horizons: np.ndarray | None = None
    """(K, S) open-loop residuals at the detector's horizons, in training stds (NaN rows: not
    available yet, e.g. the first ``k`` steps of an asset); None: no open-loop evidence."""


def step_evidence(
    normalised_error: Callable[[np.ndarray, np.ndarray], np.ndarray],
    predicted_values: np.ndarray,
    observed: np.ndarray,
    z: np.ndarray,
    predicted_z: np.ndarray,
    scale: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """For B assets: one-step predictions (B, S) SI, observations (B, S) SI, encodings (B, D) of
    the windows ending at them and the latents predicted a step earlier (B, D) ->
    (residuals (B, S) in training stds, latent distances (B,)). ``scale`` (B, S): the error the
    model expected for each prediction, in training stds (its variance head): residuals are then
    in those units."""
    residuals = normalised_error(predicted_values, observed)
    if scale is not None:
        residuals = residuals / scale
    latent = np.sqrt(np.mean((np.asarray(z, np.float64) - predicted_z) ** 2, axis=-1))
    return residuals, latent


class Rollout(Protocol):
    """What :func:`open_loop_residuals` needs of a model (:class:`~twin.worker.inference.ModelAdapter`)."""

    def rollout_read(self, z: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def advance(self, z: np.ndarray, actions: np.ndarray) -> np.ndarray: ...

    def read_scaled(self, latents: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def normalised_error(self, predicted: np.ndarray, observed: np.ndarray) -> np.ndarray: ...


def open_loop_residuals(
    model: Rollout,
    z: np.ndarray,
    actions: np.ndarray,
    observed: np.ndarray,
    horizons: tuple[int, ...],
    scaled: bool = False,
    chunk: int = 8192,
) -> np.ndarray:
    """Whole episodes: latents ``z`` (B, T, D) of the windows ending at each step, ``actions``
    (B, T, A) SI applied after each step, readings ``observed`` (B, T, S) -> open-loop residuals
    (B, T, K, S) in training stds: at step t and horizon k, the reading minus the rollout from
    ``z[t - k]`` through ``actions[t - k : t]`` (NaN where ``t < k`` or the latent is unknown);
    ``scaled``: divided by the error scale the model predicts for that rollout (see
    :func:`step_evidence`). One batched rollout per horizon; the same arithmetic as
    :meth:`OpenLoop.residuals`. ``chunk``: rollouts per batch (a rollout holds all ``k`` latents
    of each: hours of evidence at once would not fit in memory)."""
    b, steps, s = observed.shape
    out = np.full((b, steps, len(horizons), s), np.nan)
    for j, k in enumerate(horizons):
        if steps <= k:
            continue
        origins = z[:, : steps - k].reshape(-1, z.shape[-1])
        plans = np.stack([actions[:, t : t + k] for t in range(steps - k)], axis=1)
        plans = plans.reshape(-1, k, actions.shape[-1])
        ok = np.isfinite(origins).all(axis=1) & np.isfinite(plans).all(axis=(1, 2))
        if not ok.any():
            continue
        target = observed[:, k:].reshape(-1, s)
        residual = np.full((len(origins), s), np.nan)
        for rows in np.array_split(np.flatnonzero(ok), -(-int(ok.sum()) // chunk)):
            predicted, scale = model.rollout_read(origins[rows], plans[rows])
            error = model.normalised_error(predicted, target[rows])
            residual[rows] = error / scale if scaled else error
        out[:, k:, j] = residual.reshape(b, steps - k, s)
    return out


class OpenLoop:
    """Per asset, the open-loop rollouts in flight: one started from each of the last
    ``max(horizons)`` latents, each advanced one step per control step with the action applied
    then, and read out when it is ``k`` steps old (see :func:`open_loop_residuals`, its batch
    form over whole episodes: one predictor step per control step instead of ``k``).

    At step t, :meth:`push` the latent of step t - 1 and the action applied after it, then call
    :meth:`residuals` with the reading of step t."""

    def __init__(self, horizons: tuple[int, ...]) -> None:
        self.horizons = tuple(horizons)
        self.depth = max(self.horizons, default=0)
        self.flight: np.ndarray | None = None
        """(n, D) latents predicted for the current step, from origins ``ages`` steps back."""
        self.ages = np.zeros(0, dtype=int)
        self.action: np.ndarray | None = None
        self.step: int | None = None
        """The asset's step count when the owner last saw it (a jump: frames were coalesced)."""
        self.model: object = None
        """The model whose latents are in flight (an asset switched to another one starts again)."""

    def clear(self) -> None:
        """Forget the past (a gap in the stream, a restart): the open-loop evidence refills."""
        self.flight, self.ages, self.action = None, np.zeros(0, dtype=int), None

    def push(self, z: np.ndarray, action: np.ndarray) -> None:
        """A new origin (the latent of the previous step) and the action applied after it."""
        z = np.asarray(z, dtype=np.float32)[None]
        self.flight = z if self.flight is None else np.concatenate([self.flight, z])
        self.ages = np.append(self.ages, 0)
        self.action = np.asarray(action, dtype=np.float64)

    @staticmethod
    def residuals(
        model: Rollout,
        loops: list[OpenLoop],
        observed: np.ndarray,
        horizons: tuple[int, ...],
        scaled: bool = False,
    ) -> np.ndarray:
        """For B assets (their :class:`OpenLoop`, readings (B, S) SI) -> (B, K, S) residuals in
        training stds (NaN where an asset has fewer than ``k`` steps of past; ``scaled``: in
        units of the model's predicted error for each rollout). Every rollout in
        flight, of every asset, advances in one batched predictor step; the rollouts ``k``
        steps old are read out together."""
        b, s = observed.shape
        out = np.full((b, len(horizons), s), np.nan)
        moving = [i for i, loop in enumerate(loops) if loop.action is not None and loop.flight is not None]
        if not moving:
            return out
        flights = [loops[i].flight for i in moving]
        sizes = [len(f) for f in flights]
        held = [
            np.repeat(np.asarray(loops[i].action)[None], n, 0) for i, n in zip(moving, sizes, strict=True)
        ]
        actions = np.concatenate(held)
        advanced = model.advance(np.concatenate(flights), actions)
        rows, latents = [], []
        for i, chunk in zip(moving, np.split(advanced, np.cumsum(sizes)[:-1]), strict=True):
            loop = loops[i]
            loop.ages = loop.ages + 1
            keep = loop.ages < loop.depth
            for j, k in enumerate(horizons):
                hit = np.flatnonzero(loop.ages == k)
                if len(hit):
                    rows.append((i, j))
                    latents.append(chunk[hit[0]])
            loop.flight, loop.ages, loop.action = chunk[keep], loop.ages[keep], None
        if rows:
            predicted, scale = model.read_scaled(np.stack(latents))
            index = np.array([i for i, _ in rows])
            errors = model.normalised_error(predicted, observed[index])
            if scaled:
                errors = errors / scale
            for n, (i, j) in enumerate(rows):
                out[i, j] = errors[n]
        return out
