"""Helpers of the model tests: a tiny synthetic dataset (a damped, driven oscillator with an angle
sensor). Unique module name: several test folders have a conftest."""

from __future__ import annotations

import math

import numpy as np

from bridge import ActuatorSpec, SensorSpec, StreamSchema
from twin.model.data import Dataset, Episode
from twin.model.jepa import ModelConfig
from twin.model.losses import ObjectiveConfig
from twin.model.pipeline import RunConfig
from twin.model.train import TrainConfig

TINY_RUN = RunConfig(
    model=ModelConfig(latent_dim=8, hidden=16, action_dim=4, history=3),
    objective=ObjectiveConfig(rollout_steps=4),
    train=TrainConfig(steps=30, batch=32, eval_every=15, warmup=5),
    neural_baselines=False,
    val_windows=50,
)
"""A run of a few seconds on :func:`oscillator_data` (no neural baselines)."""


def oscillator_schema(asset: str = "osc-0") -> StreamSchema:
    sensors = (
        SensorSpec("angle", "rad", -math.pi, math.pi),
        SensorSpec("rate", "rad/s", -50.0, 50.0),
        SensorSpec("position", "m", -10.0, 10.0),
    )
    return StreamSchema(
        asset=asset,
        stream="state",
        kind="vector",
        dtype="<f8",
        shape=(3,),
        rate_hz=30.0,
        sensors=sensors,
        actuators=(ActuatorSpec("torque", "N*m", -2.0, 2.0),),
    )


def oscillator_data(episodes: int = 12, steps: int = 120, seed: int = 0) -> Dataset:
    """A pendulum-like system: angle (wrapped), rate, and a slow position driven by the action."""
    rng = np.random.default_rng(seed)
    dt = 1 / 30
    out = []
    for _ in range(episodes):
        theta, omega, x = rng.uniform(-3, 3), rng.uniform(-1, 1), rng.uniform(-1, 1)
        obs, actions = [], []
        hold = 0.0
        for t in range(steps + 1):
            obs.append(((theta + math.pi) % (2 * math.pi) - math.pi, omega, x))
            if t == steps:
                break
            if t % 5 == 0:
                hold = float(rng.uniform(-2, 2))
            actions.append((hold,))
            omega += dt * (-4.0 * math.sin(theta) - 0.2 * omega + 3.0 * hold)
            theta += dt * omega
            x += dt * (0.5 * hold - 0.1 * x)
        out.append(Episode(np.asarray(obs), np.asarray(actions)))
    return Dataset(oscillator_schema(), tuple(out), 30.0, {"source": "synthetic", "scene": "oscillator"})
