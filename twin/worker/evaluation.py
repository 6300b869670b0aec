"""Detection quality on the simulator's fault library: episodes, baselines and metrics.

Episodes are simulated through the Scene API as ``twin sim`` runs a cartpole (default
controller at 60 Hz with its random excitation, ``state`` read at 30 Hz, ideal sensors), each
fault scheduled with :meth:`Scene.apply_fault` at ``fault_s``. Each fault episode has a nominal
twin (same seed, no fault). Scores are replayed through the worker's own code
(:mod:`twin.worker.replay`); the two baselines get the same per-episode calibration segment:

* ``zscore``: per sensor, the reading's z-score against the previous ``ZSCORE_WINDOW`` readings,
  divided by the calibration segment's robust spread of that z-score; score = max over sensors;
* ``mlp``: the supervised sensor-space MLP stored with the checkpoint, fed the true actions (an
  advantage: the twin infers them), one-step residual in training stds, calibrated per sensor by
  median and MAD on the calibration segment; score = mean of squared calibrated residuals.

Metrics: ``auroc``: per episode, the largest score in ``[fault_s, fault_s + window_s)`` of the
faulty episode against the same window of its nominal twin (all pairs); ``delay``: first anomaly
event at or after ``fault_s``; ``false alarms per hour``: anomaly events on long nominal runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from twin.worker.detector import robust_scale
from twin.worker.inference import ModelAdapter

CONTROL_HZ = 30.0
ZSCORE_WINDOW = 30


@dataclass(frozen=True, slots=True)
class FaultCase:
    """One fault of the library with a magnitude: ``spec`` as for ``twin sim --fault`` (no at_s)."""

    label: str
    kind: str
    spec: dict[str, Any] = field(default_factory=dict)


def _case(label: str, kind: str, fault: str, **params: Any) -> FaultCase:
    return FaultCase(label, kind, {"kind": fault, **params})


CARTPOLE_FAULTS = (
    _case("pole mass x1.5", "mass", "mass_change", link="pole", factor=1.5),
    _case("pole mass x3", "mass", "mass_change", link="pole", factor=3.0),
    _case("rail friction 0.5 N", "friction", "friction_change", joint="slider_to_cart", coulomb=0.5),
    _case("rail friction 2 N", "friction", "friction_change", joint="slider_to_cart", coulomb=2.0),
    _case("actuator gain 0.7", "actuator", "actuator_weakness", actuator="cart_force", gain=0.7),
    _case("actuator gain 0.5", "actuator", "actuator_weakness", actuator="cart_force", gain=0.5),
    _case("cart position drift 0.05 m/s", "drift", "sensor_drift", sensor="cart_position", rate_per_s=0.05),
    _case("pole angle drift 0.05 rad/s", "drift", "sensor_drift", sensor="pole_angle", rate_per_s=0.05),
    _case("pole angle stuck", "stuck", "sensor_stuck", sensor="pole_angle"),
    _case("cart velocity stuck", "stuck", "sensor_stuck", sensor="cart_velocity"),
)
"""The cartpole fault library used by ``bench/worker.py``: the issue's five kinds, a subtle and a
larger magnitude each (the subtle mass and friction are the prototype's misses)."""


@dataclass(frozen=True, slots=True)
class Episodes:
    """``observed`` (B, T, S) SI at 30 Hz, ``actions`` (B, T, A) applied after each reading (the
    mean of the controller's commands over the step: one command at the default 30 Hz control),
    as a controller on the bus would publish them on ``act.<asset>.cmd``."""

    observed: np.ndarray
    actions: np.ndarray


def simulate(
    seeds: list[int],
    steps: int,
    faults: list[dict[str, Any] | None],
    fault_s: float,
    control_hz: float = CONTROL_HZ,
    scene_name: str = "cartpole",
    obs_hz: float = CONTROL_HZ,
) -> Episodes:
    """One episode of ``scene_name`` (its default controller) per seed (and fault spec, or None),
    ``steps`` readings at ``obs_hz``, the controller run at ``control_hz`` (a multiple of
    ``obs_hz``; ``twin sim`` runs the cartpole's at 60 Hz)."""
    from sim.faults import fault_from_dict
    from sim.registry import make_scene
    from sim.scene import SceneConfig

    scene = make_scene(scene_name, SceneConfig(seed=0, controller="default"))
    try:
        ticks = round(scene.schema().rate_hz / obs_hz)
        every = round(scene.schema().rate_hz / control_hz)
        observed = np.empty((len(seeds), steps, len(scene.schema().sensors)))
        actions = np.empty((len(seeds), steps, len(scene.schema().actuators)))
        for i, (seed, spec) in enumerate(zip(seeds, faults, strict=True)):
            scene.reset(seed)
            if spec is not None:
                scene.apply_fault(fault_from_dict({**spec, "at_s": fault_s}))
            for t in range(steps):
                observed[i, t] = scene.observe()
                applied = np.zeros(actions.shape[-1])
                for k in range(ticks):
                    if k % every == 0:
                        scene.act(every / scene.schema().rate_hz)
                    applied += scene.action
                    scene.world.step()
                actions[i, t] = applied / ticks  # the mean command over the step (60 Hz control)
            scene.pop_events()
    finally:
        scene.close()
    return Episodes(observed, actions)


def zscore_scores(observed: np.ndarray, calib: slice) -> np.ndarray:
    """Rolling z-score baseline: (B, T) scores (0 before a full window)."""
    b, steps, s = observed.shape
    z = np.zeros((b, steps, s))
    for t in range(ZSCORE_WINDOW, steps):
        past = observed[:, t - ZSCORE_WINDOW : t]
        z[:, t] = np.abs(observed[:, t] - past.mean(axis=1)) / (past.std(axis=1) + 1e-9)
    out = np.zeros((b, steps))
    for i in range(b):
        _, spread = robust_scale(z[i, calib])
        out[i] = (z[i] / spread).max(axis=1)
    return out


@torch.no_grad()
def mlp_scores(model: ModelAdapter, observed: np.ndarray, actions: np.ndarray, calib: slice) -> np.ndarray:
    """Sensor-space MLP residual baseline: (B, T) scores (0 where no prediction is due)."""
    mlp = model.baseline("mlp")
    if mlp is None:
        raise LookupError(f"{model.name} stores no 'mlp' baseline (train it with neural baselines)")
    b, steps, s = observed.shape
    h = model.history
    features = model.model.features
    residual = np.zeros((b, steps, s))
    for t in range(h, steps):
        window = torch.from_numpy(features.features(observed[:, t - h : t]))
        action = torch.from_numpy(features.actions(actions[:, t - 1 : t]))
        predicted = features.values(mlp.forecast_features(window, None, action)[:, 0].numpy())
        residual[:, t] = model.normalised_error(predicted, observed[:, t])
    out = np.zeros((b, steps))
    for i in range(b):
        centre, scale = robust_scale(residual[i, calib])
        out[i] = np.mean(((residual[i] - centre) / scale) ** 2, axis=1)
    out[:, :h] = 0.0
    return out


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counting half (the Mann-Whitney statistic)."""
    pos, neg = np.asarray(positive, float)[:, None], np.asarray(negative, float)[None, :]
    return float(np.mean((pos > neg) + 0.5 * (pos == neg)))


def window_max(scores: np.ndarray, start: int, stop: int) -> np.ndarray:
    return scores[:, start:stop].max(axis=1)


def first_onsets(onset: np.ndarray, start: int) -> np.ndarray:
    """Steps from ``start`` to the first anomaly event at or after it (inf: none)."""
    out = np.full(len(onset), np.inf)
    for i, row in enumerate(onset[:, start:]):
        hits = np.flatnonzero(row)
        if len(hits):
            out[i] = hits[0]
    return out
