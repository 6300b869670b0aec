"""Offline replay: recorded or simulated episodes through the worker's own evidence and detector.

This is how detection quality is measured (``bench/worker.py``) without a bus: the same
:class:`~twin.worker.inference.ModelAdapter` calls as :meth:`twin.worker.loop.TwinWorker.step`
(encode the window, infer the held action by inverse dynamics when none is known, predict one
step), the same :func:`~twin.worker.surprise.step_evidence`, the same
:class:`~twin.worker.detector.Detector` fed step by step, and the same anomaly bookkeeping as
:meth:`TwinWorker.detect` (an anomaly starts on an alarm and ends after ``clear_steps`` quiet
steps, when CUSUM and EWMA restart). B episodes are stepped in lockstep, one batched forward
pass per control step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from twin.worker.config import DetectorConfig
from twin.worker.detector import STATISTICS, Detector, Verdict
from twin.worker.inference import ModelAdapter
from twin.worker.profile import DetectorProfile
from twin.worker.surprise import Surprise, open_loop_residuals, step_evidence


@dataclass(frozen=True, slots=True)
class Evidence:
    """Per episode and control step: ``residual`` (B, T, S), ``latent`` (B, T) (NaN where no
    prediction was due yet: the first ``history`` steps) and the readings ``observed`` (B, T, S)."""

    residual: np.ndarray
    latent: np.ndarray
    observed: np.ndarray
    horizons: np.ndarray | None = None
    """(B, T, K, S) open-loop residuals at the detector's horizons (None: not computed)."""


@dataclass(frozen=True, slots=True)
class Detection:
    """Per episode and step: ``score`` (B, T) (the largest ratio, 1 = alarm level), ``ratios``
    (B, T, len(STATISTICS)), ``alarm`` (B, T) and ``onset`` (B, T): an anomaly event raised."""

    score: np.ndarray
    ratios: np.ndarray
    alarm: np.ndarray
    onset: np.ndarray


def replay_evidence(
    model: ModelAdapter,
    observed: np.ndarray,
    held: np.ndarray | None = None,
    horizons: tuple[int, ...] = (),
    scaled: bool = False,
) -> Evidence:
    """Observations (B, T, S) SI at the model's control rate -> evidence, as the live loop computes
    it. ``held`` (B, T, A): the actions applied after each reading, as a controller publishes
    them on the bus (None: inferred by inverse dynamics, as with a sim that runs its own
    controller). ``horizons``: open-loop residuals at these horizons too (the latent ``k`` steps
    back rolled out through the actions applied since, known or inferred). ``scaled``: every
    residual in units of the error the model predicted for it (``DetectorConfig.scaled``)."""
    b, steps, s = observed.shape
    h = model.history
    residual = np.full((b, steps, s), np.nan)
    latent = np.full((b, steps), np.nan)
    zs = np.full((b, steps, model.latent_dim), np.nan, dtype=np.float32)
    applied = np.full((b, steps, model.n_actions), np.nan)
    z_prev = np.full((b, model.latent_dim), np.nan, dtype=np.float32)
    predicted_values = predicted_z = predicted_scale = None
    for t in range(h - 1, steps):
        windows = observed[:, t - h + 1 : t + 1]
        actions = None if held is None else held[:, t]
        forecast = model.forecast(windows, z_prev, actions, 1)
        if predicted_values is not None and predicted_z is not None:
            residual[:, t], latent[:, t] = step_evidence(
                model.normalised_error,
                predicted_values,
                observed[:, t],
                forecast.z,
                predicted_z,
                predicted_scale if scaled else None,
            )
            if held is None:  # inferred from z[t-1] -> z[t]: the action applied after t - 1
                applied[:, t - 1] = forecast.actions
        zs[:, t] = forecast.z
        z_prev = forecast.z
        predicted_values, predicted_z = forecast.next_values, forecast.latents[:, 0]
        predicted_scale = forecast.scale[:, 0]
    if held is not None:
        applied = np.asarray(held, dtype=np.float64)
    open_loop = open_loop_residuals(model, zs, applied, observed, horizons, scaled) if horizons else None
    return Evidence(residual, latent, observed, open_loop)


def _judged(
    evidence: Evidence, i: int, detector: Detector, periods: np.ndarray | None
) -> Iterator[tuple[int, Verdict]]:
    """Episode ``i``'s steps through ``detector``: (step, verdict) where it judged (armed, not
    paused), as the live loop feeds :meth:`Detector.update`."""
    for t in range(evidence.residual.shape[1]):
        if not np.isfinite(evidence.latent[i, t]):
            continue
        open_loop = None if evidence.horizons is None else evidence.horizons[i, t]
        surprise = Surprise(
            evidence.residual[i, t],
            float(evidence.latent[i, t]),
            evidence.observed[i, t],
            step=t,
            periods=periods,
            horizons=open_loop,
        )
        verdict = detector.update(surprise)
        if detector.armed and verdict.ratios:
            yield t, verdict


def replay_detector(
    evidence: Evidence,
    config: DetectorConfig,
    sensors: tuple[str, ...],
    periods: np.ndarray | None = None,
    profile: DetectorProfile | None = None,
    limits: tuple[np.ndarray, np.ndarray] | None = None,
) -> Detection:
    """Feed each episode's evidence to a fresh detector (one per episode: per-asset calibration).
    ``periods``: the model's residual periods (:attr:`ModelAdapter.periods`), as the loop passes;
    ``profile``: the model's reference profile (:mod:`twin.worker.profile`) and ``limits`` the
    sensors' ranges (:attr:`ModelAdapter.limits`), as the loop passes."""
    b, steps, _ = evidence.residual.shape
    score = np.zeros((b, steps))
    ratios = np.zeros((b, steps, len(STATISTICS)))
    alarm = np.zeros((b, steps), dtype=bool)
    onset = np.zeros((b, steps), dtype=bool)
    for i in range(b):
        detector = Detector(config, sensors, profile, limits)
        active, quiet = False, 0
        for t, verdict in _judged(evidence, i, detector, periods):
            score[i, t] = verdict.score
            ratios[i, t] = [verdict.ratios.get(k, 0.0) for k in STATISTICS]
            alarm[i, t] = verdict.alarm
            if not active:
                if verdict.alarm:
                    active, quiet = True, 0
                    onset[i, t] = True
                continue
            quiet = 0 if verdict.alarm or verdict.score > 0.8 else quiet + 1
            if quiet >= config.clear_steps:
                active = False
                detector.reset_statistics()
    return Detection(score, ratios, alarm, onset)


def replay_ratios(
    evidence: Evidence,
    config: DetectorConfig,
    sensors: tuple[str, ...],
    periods: np.ndarray | None = None,
    limits: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Each episode through a fresh detector that never declares an anomaly (no restart of its
    path statistics): (B, T, len(STATISTICS)) ratios, NaN until it is armed. What nominal
    reference runs show a :class:`~twin.worker.profile.DetectorProfile` (with a fitted profile
    they would not alarm, so nothing would restart)."""
    b, steps, _ = evidence.residual.shape
    out = np.full((b, steps, len(STATISTICS)), np.nan)
    for i in range(b):
        detector = Detector(config, sensors, limits=limits)
        for t, verdict in _judged(evidence, i, detector, periods):
            out[i, t] = [verdict.ratios.get(k, 0.0) for k in STATISTICS]
    return out
