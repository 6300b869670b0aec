"""Clocks that pace the simulation loop: real time (with measured jitter) or as fast as possible."""

from __future__ import annotations

import time
from typing import Protocol

import numpy as np

SPIN_S = 0.0003
"""Sleep until this close to a deadline, then spin: the spin absorbs the wake-up latency (with
the 1 us timer slack :mod:`sim.sched` asks for, ~0.05-0.1 ms when a CPU is free). Longer spins
buy nothing on a loaded machine: spinning is CPU time, which lowers the loop's standing with
the scheduler (measured at load 7-9 on 2 cores: p99 lateness 3.6-3.9 ms with 0.3 ms, 3.9-7.4 ms
with 1 ms, both with the short slice)."""


class Clock(Protocol):
    def start(self) -> None: ...

    def wait(self, tick: int) -> None:
        """Return when physics tick ``tick`` is due."""

    def jitter_ms(self) -> tuple[float, float, float]:
        """(p50, p99, max) lateness of tick starts, milliseconds (zeros when not paced)."""


class FastClock:
    """No pacing: ticks run back to back."""

    def start(self) -> None:
        pass

    def wait(self, tick: int) -> None:
        pass

    def jitter_ms(self) -> tuple[float, float, float]:
        return 0.0, 0.0, 0.0


class RealtimeClock:
    """Tick ``k`` starts at ``start + k / rate_hz`` seconds; lateness is recorded per tick.

    A loop that falls more than ``max_lag_s`` behind re-anchors (logged as lateness, never
    made up by running ticks back to back).
    """

    def __init__(
        self, rate_hz: float, max_lag_s: float = 0.25, keep: int = 1_000_000, spin_s: float = SPIN_S
    ) -> None:
        self.period = 1.0 / rate_hz
        self.spin_s = spin_s
        self.max_lag_s = max_lag_s
        self.lateness = np.zeros(keep, dtype=np.float64)
        self.busy = np.zeros(keep, dtype=np.float64)
        """Seconds each tick's work took (from its start to the next wait)."""
        self.count = 0
        self._started = 0.0
        self.origin = 0.0
        self.resyncs = 0

    def start(self) -> None:
        self.origin = time.perf_counter()
        self.count = 0

    def wait(self, tick: int) -> None:
        due = self.origin + tick * self.period
        now = time.perf_counter()
        if 0 < self.count <= len(self.busy):
            self.busy[self.count - 1] = now - self._started
        remaining = due - now
        if remaining > self.spin_s:
            time.sleep(remaining - self.spin_s)
        while (now := time.perf_counter()) < due:
            pass
        self._started = now
        late = now - due
        if self.count < len(self.lateness):
            self.lateness[self.count] = late
            self.count += 1
        if late > self.max_lag_s:
            self.origin += late
            self.resyncs += 1

    def jitter_ms(self) -> tuple[float, float, float]:
        if self.count == 0:
            return 0.0, 0.0, 0.0
        data = self.lateness[: self.count] * 1e3
        return float(np.percentile(data, 50)), float(np.percentile(data, 99)), float(data.max())

    def work_ms(self) -> tuple[float, float, float]:
        """(p50, p99, max) of the time each tick's work took, milliseconds."""
        done = max(0, min(self.count, len(self.busy)) - 1)
        if done == 0:
            return 0.0, 0.0, 0.0
        data = self.busy[:done] * 1e3
        return float(np.percentile(data, 50)), float(np.percentile(data, 99)), float(data.max())
