"""Controllers that produce actions when nobody on the bus does.

A scene's ``control()`` combines, according to ``SceneConfig.controller``:

* ``default``: the scene's scripted controller (balance, reach-and-push, speed profile...)
  plus random excitation, so recorded data covers the state space, not one trajectory;
* ``random``: random excitation plus a weak centring term (purely random forces drive a cart
  off its rail, a shaft to overspeed);
* ``none``: zeros.

Excitation is an Ornstein-Uhlenbeck process per actuator (correlation time ``tau_s``, standard
deviation ``amplitude`` x half the actuator range), drawn from the scene's seeded generator.
Actions from the bus (:class:`BusActions`) replace all of these for the assets they address.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from bridge import ActuatorSpec

CONTROLLER_MODES = ("default", "random", "bus", "none")
"""Who drives the actuators: the scene's own controller, random excitation, the bus, nobody."""


NOISE_BLOCK = 64
"""Standard normals drawn per generator call: one call per 64 samples instead of one each
(the sequence is the same as drawing them one at a time)."""


@dataclass(slots=True)
class Excitation:
    """Ornstein-Uhlenbeck excitation (n_actuators,) in actuator units.

    Advance it by the time since the last sample (the control period), so ``tau_s`` is the
    correlation time in simulated seconds whatever the control rate. Normals come from the
    scene's generator in blocks of :data:`NOISE_BLOCK`; the unread part of a block is state
    (:meth:`save` / :meth:`load` keep forks exact).
    """

    scale: np.ndarray
    tau_s: float
    dt: float
    value: np.ndarray
    noise: list[float] = field(default_factory=list)
    used: int = 0
    _decay: dict[float, tuple[float, float]] = field(default_factory=dict)

    @classmethod
    def for_actuators(
        cls, actuators: tuple[ActuatorSpec, ...], amplitude: float, dt: float, tau_s: float = 0.5
    ) -> Excitation:
        half = np.array(
            [(a.high - a.low) / 2 if math.isfinite(a.high - a.low) else 1.0 for a in actuators],
            dtype=np.float64,
        )
        return cls(half * amplitude, tau_s, dt, np.zeros(len(actuators)))

    def _factors(self, step: float) -> tuple[float, float]:
        factors = self._decay.get(step)
        if factors is None:
            decay = math.exp(-step / self.tau_s)
            factors = self._decay[step] = (decay, math.sqrt(1.0 - decay * decay))
        return factors

    def _normal(self, rng: np.random.Generator) -> float:
        if self.used >= len(self.noise):
            self.noise = rng.standard_normal(NOISE_BLOCK).tolist()
            self.used = 0
        self.used += 1
        return self.noise[self.used - 1]

    def sample(self, rng: np.random.Generator, dt: float | None = None) -> np.ndarray:
        """Advance by ``dt`` seconds (default one physics tick) and return the excitation."""
        decay, spread = self._factors(self.dt if dt is None else dt)
        value, scale = self.value, self.scale
        for i in range(len(value)):
            value[i] = value[i] * decay + self._normal(rng) * spread * scale[i]
        return value.copy()

    def sample_scalar(self, rng: np.random.Generator, dt: float) -> float:
        """:meth:`sample` for a one-actuator scene, as a float (the runner's hot path)."""
        factors = self._decay.get(dt) or self._factors(dt)
        if self.used >= len(self.noise):
            self.noise = rng.standard_normal(NOISE_BLOCK).tolist()
            self.used = 0
        normal = self.noise[self.used]
        self.used += 1
        value = self.value
        x = value.item(0) * factors[0] + normal * factors[1] * self.scale.item(0)
        value[0] = x
        return x

    def save(self) -> tuple[np.ndarray, list[float], int]:
        return self.value.copy(), list(self.noise), self.used

    def load(self, saved: tuple[np.ndarray, list[float], int]) -> None:
        value, noise, used = saved
        self.value, self.noise, self.used = value.copy(), list(noise), used

    def reset(self) -> None:
        self.value = np.zeros_like(self.value)
        self.noise, self.used = [], 0


def clip_to_bounds(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    return np.minimum(np.maximum(values, low), high)


class BusActions:
    """The latest valid action received from the bus per asset (held until the next one)."""

    def __init__(self) -> None:
        self.latest: dict[str, np.ndarray] = {}
        self.received = 0
        self.rejected = 0

    def offer(self, asset: str, values: np.ndarray) -> None:
        self.latest[asset] = values
        self.received += 1

    def get(self, asset: str, n_actuators: int) -> np.ndarray:
        held = self.latest.get(asset)
        return np.zeros(n_actuators) if held is None else held
