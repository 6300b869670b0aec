"""Sensor models: what a real instrument does to the true value before anyone reads it.

Each scalar sensor of a scene has a :class:`SensorModel`: its own sample rate (a decimation of
the physics rate; between samples the last sample is held), Gaussian noise (standard deviation
in the sensor's unit), a constant bias, quantisation to a step, and a latency (the sample shows
the true value of ``latency_s`` seconds ago, rounded to physics ticks). Noise is drawn from the
scene's seeded generator, so the same seed gives the same noisy stream, bit for bit.

Faults (:mod:`sim.faults`) act here too: extra bias or drift, a stuck value, dropout (NaN) and
noise bursts, all recorded in :class:`SensorState` so forks restore them.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class SensorModel:
    """How one scalar sensor reads. ``rate_hz=None``: sampled at every observation."""

    rate_hz: float | None = None
    noise_std: float = 0.0
    bias: float = 0.0
    quantum: float = 0.0
    latency_s: float = 0.0

    def __post_init__(self) -> None:
        if self.rate_hz is not None and not (math.isfinite(self.rate_hz) and self.rate_hz > 0):
            raise ValueError(f"SensorModel.rate_hz={self.rate_hz!r} must be a positive number of Hz or None")
        for name in ("noise_std", "quantum", "latency_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"SensorModel.{name}={value!r} must be a finite number >= 0")
        if not (isinstance(self.bias, (int, float)) and math.isfinite(self.bias)):
            raise ValueError(f"SensorModel.bias={self.bias!r} must be a finite number")


IDEAL = SensorModel()


@dataclass(slots=True)
class SensorState:
    """The mutable part of a sensor array (copied into snapshots)."""

    held: np.ndarray
    last_sample_tick: np.ndarray
    fault_bias: np.ndarray
    drift_per_s: np.ndarray
    drift_start_s: np.ndarray
    stuck: np.ndarray  # NaN: not stuck; otherwise the value it is stuck at
    dropout: np.ndarray  # bool
    extra_noise: np.ndarray  # std added by a noise burst

    def copy(self) -> SensorState:
        return SensorState(*(getattr(self, f).copy() for f in self.__slots__))


class SensorArray:
    """Turns true values (n,) into measured values (n,) for one scene's vector stream."""

    def __init__(self, names: tuple[str, ...], models: dict[str, SensorModel], rate_hz: float) -> None:
        unknown = sorted(set(models) - set(names))
        if unknown:
            raise ValueError(f"sensor model(s) for unknown sensor(s) {unknown}; this scene has {list(names)}")
        self.names = names
        self.index = {name: i for i, name in enumerate(names)}
        n = len(names)
        chosen = [models.get(name, IDEAL) for name in names]
        self.noise_std = np.array([m.noise_std for m in chosen], dtype=np.float64)
        self.bias = np.array([m.bias for m in chosen], dtype=np.float64)
        self.quantum = np.array([m.quantum for m in chosen], dtype=np.float64)
        self.decimation = np.array(
            [1 if m.rate_hz is None else max(1, round(rate_hz / m.rate_hz)) for m in chosen], dtype=np.int64
        )
        self.latency_ticks = np.array([round(m.latency_s * rate_hz) for m in chosen], dtype=np.int64)
        self.max_latency = int(self.latency_ticks.max(initial=0))
        self.ideal = not (
            self.noise_std.any() or self.bias.any() or self.quantum.any() or (self.decimation > 1).any()
        )
        quantised = self.quantum > 0
        self._quantise_all = bool(quantised.all())
        self._quantise_some = quantised if quantised.any() and not self._quantise_all else None
        self._every_tick = bool((self.decimation == 1).all())
        self._std = self.noise_std
        self.trivial = self.ideal and self.max_latency == 0
        """No noise, bias, quantisation, decimation or latency: measured = true (until a fault)."""
        self.history: deque[np.ndarray] = deque(maxlen=self.max_latency + 1)
        self.state = SensorState(
            held=np.zeros(n),
            last_sample_tick=np.full(n, -(10**12), dtype=np.int64),
            fault_bias=np.zeros(n),
            drift_per_s=np.zeros(n),
            drift_start_s=np.zeros(n),
            stuck=np.full(n, np.nan),
            dropout=np.zeros(n, dtype=bool),
            extra_noise=np.zeros(n),
        )
        self.faulty = False
        self._std = self.noise_std

    def reset(self) -> None:
        n = len(self.names)
        self.history.clear()
        self.state = SensorState(
            held=np.zeros(n),
            last_sample_tick=np.full(n, -(10**12), dtype=np.int64),
            fault_bias=np.zeros(n),
            drift_per_s=np.zeros(n),
            drift_start_s=np.zeros(n),
            stuck=np.full(n, np.nan),
            dropout=np.zeros(n, dtype=bool),
            extra_noise=np.zeros(n),
        )
        self.faulty = False
        self._std = self.noise_std

    def record(self, true_values: np.ndarray) -> None:
        """Remember the true values of this physics tick (only needed when a latency is set)."""
        self.history.append(true_values)

    def delayed(self, true_values: np.ndarray) -> np.ndarray:
        """True values as each sensor sees them through its latency."""
        if self.max_latency == 0 or not self.history:
            return true_values
        out = true_values.copy()
        depth = len(self.history)
        for i, lag in enumerate(self.latency_ticks):
            if lag:
                out[i] = self.history[max(0, depth - 1 - int(lag))][i]
        return out

    def measure(
        self, true_values: np.ndarray, tick: int, time_s: float, rng: np.random.Generator
    ) -> np.ndarray:
        """Measured values (n,) float64 at physics ``tick``; NaN where a sensor drops out."""
        if self.ideal and not self.faulty and self.max_latency == 0:
            return true_values.astype(np.float64, copy=True)
        state = self.state
        seen = self.delayed(true_values) if self.max_latency else true_values
        value = seen + self.bias
        value += rng.standard_normal(len(value)) * self._std
        if self.faulty:
            value += state.fault_bias + state.drift_per_s * np.maximum(0.0, time_s - state.drift_start_s)
        if self._quantise_all:
            value = np.round(value / self.quantum) * self.quantum
        elif (some := self._quantise_some) is not None:
            value[some] = np.round(value[some] / self.quantum[some]) * self.quantum[some]
        if self._every_tick:
            state.held[:] = value
            state.last_sample_tick[:] = tick
        else:
            due = tick - state.last_sample_tick >= self.decimation
            state.held[due] = value[due]
            state.last_sample_tick[due] = tick
        out = state.held.copy()
        if self.faulty:
            stuck = ~np.isnan(state.stuck)
            out[stuck] = state.stuck[stuck]
            out[state.dropout] = np.nan
        return out

    # --- faults -------------------------------------------------------------------------------
    def sensor_index(self, name: str) -> int:
        if name not in self.index:
            raise ValueError(f"sensor {name!r} does not exist; this scene has {list(self.names)}")
        return self.index[name]

    def mark_faulty(self) -> None:
        """Re-read the fault state (call after changing it): faulty flag, noise std."""
        s = self.state
        self._std = np.hypot(self.noise_std, s.extra_noise)
        self.faulty = bool(
            s.fault_bias.any()
            or s.drift_per_s.any()
            or (~np.isnan(s.stuck)).any()
            or s.dropout.any()
            or s.extra_noise.any()
        )
