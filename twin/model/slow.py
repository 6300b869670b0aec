"""Hours-ahead forecasts of slow rotor dynamics: bearing temperature and time to a limit.

The 30 Hz world model sees 1.7 s ahead; bearing wear shows over hours. A second, slow model runs
on one-minute averages instead. Its features are the heat balance of the bearing
(``C dT/dt = P - (T - T_amb) / R`` with friction power ``P = c(t) |w| + b w^2``) made linear in
its unknowns, with the Coulomb friction allowed to grow with running time (``c(t) = c0 + c1 t``):

    T[k+1] - T[k] = theta . (1, T[k], |w|[k], w^2[k], t[k] |w|[k])

fitted by ridge least squares on a recorded run (``|w|`` and ``w^2`` are minute means of the
speed, ``t`` running hours). Forecasting iterates it over a planned speed schedule (the future
actions, as the 30 Hz model is given them); :func:`time_to_limit` reads the first minute the
forecast crosses a temperature. Units: K, rad/s, hours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MINUTE_S = 60.0


@dataclass(frozen=True, slots=True)
class MinuteSeries:
    """A run at one sample a minute: ``temperature`` (M,) K at each minute's end, ``speed_abs`` and
    ``speed_sq`` (M,) minute means of |w| and w^2, ``hours`` (M,) running time at each minute's end."""

    temperature: np.ndarray
    speed_abs: np.ndarray
    speed_sq: np.ndarray
    hours: np.ndarray

    def __len__(self) -> int:
        return len(self.temperature)

    @classmethod
    def from_samples(
        cls, speed: np.ndarray, temperature: np.ndarray, rate_hz: float, start_hours: float = 0.0
    ) -> MinuteSeries:
        """Minute averages of ``speed`` (N,) rad/s and end-of-minute ``temperature`` (N,) K."""
        per = round(MINUTE_S * rate_hz)
        m = len(speed) // per
        if m < 2:
            raise ValueError(f"need at least 2 minutes of samples at {rate_hz} Hz, got {len(speed)}")
        w = np.asarray(speed[: m * per], dtype=np.float64).reshape(m, per)
        temp = np.asarray(temperature[: m * per], dtype=np.float64).reshape(m, per)[:, -1]
        hours = start_hours + np.arange(1, m + 1) * MINUTE_S / 3600.0
        return cls(temp, np.abs(w).mean(axis=1), (w**2).mean(axis=1), hours)

    def slice(self, start: int, stop: int | None = None) -> MinuteSeries:
        s = slice(start, stop)
        return MinuteSeries(self.temperature[s], self.speed_abs[s], self.speed_sq[s], self.hours[s])


def _design(
    temperature: np.ndarray, speed_abs: np.ndarray, speed_sq: np.ndarray, hours: np.ndarray, wear: bool
):
    columns = [np.ones_like(temperature), temperature, speed_abs, speed_sq / 100.0]
    if wear:
        columns.append(hours * speed_abs)
    return np.stack(columns, axis=-1)


@dataclass(frozen=True, slots=True)
class ThermalForecaster:
    """Minute-rate heat balance (see the module docstring); ``wear=False`` leaves out the friction
    growth (the same model for a bearing that does not wear)."""

    theta: np.ndarray
    wear: bool = True

    @classmethod
    def fit(cls, series: MinuteSeries, wear: bool = True, ridge: float = 1e-6) -> ThermalForecaster:
        x = _design(
            series.temperature[:-1], series.speed_abs[1:], series.speed_sq[1:], series.hours[1:], wear
        )
        y = np.diff(series.temperature)
        theta = np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ y)
        return cls(theta, wear)

    def forecast(self, temperature: float, plan: MinuteSeries) -> np.ndarray:
        """Temperature (M,) K at the end of each minute of ``plan`` (its speeds and hours; its own
        temperatures are not used), starting from ``temperature`` K now."""
        out = np.empty(len(plan))
        t = float(temperature)
        for k in range(len(plan)):
            row = _design(np.array(t), plan.speed_abs[k], plan.speed_sq[k], plan.hours[k], self.wear)
            t = t + float(row @ self.theta)
            out[k] = t
        return out


def time_to_limit(temperature: np.ndarray, limit_k: float) -> float | None:
    """Minutes until ``temperature`` (M,) first reaches ``limit_k`` (None: not within M minutes)."""
    above = np.flatnonzero(np.asarray(temperature) >= limit_k)
    return None if not len(above) else float(above[0] + 1)


def simulate_run(hours: float, seed: int, wear_per_hour: float, rate_hz: float = 30.0) -> MinuteSeries:
    """A rotor run of ``hours`` under its default controller (speed set-points every 30 s) with
    bearing wear, physics and control at ``rate_hz``, as a :class:`MinuteSeries`."""
    from sim.registry import make_scene
    from sim.scene import SceneConfig

    config = SceneConfig(seed=seed, rate_hz=rate_hz, options={"wear_per_hour": wear_per_hour})
    scene = make_scene("rotor", config)
    try:
        scene.reset(seed)
        names = [s.name for s in scene.schema().sensors]
        speed_i, temp_i = names.index("speed"), names.index("bearing_temperature")
        n = round(hours * 3600 * rate_hz)
        speed, temperature = np.empty(n), np.empty(n)
        for i in range(n):
            scene.step(scene.control())
            obs = scene.observe()
            speed[i], temperature[i] = obs[speed_i], obs[temp_i]
    finally:
        scene.close()
    return MinuteSeries.from_samples(speed, temperature, rate_hz)


def evaluate_hours(
    train: MinuteSeries, test: MinuteSeries, start_hours: float, horizons_h: tuple[float, ...], limit_k: float
) -> dict[str, object]:
    """Fit on ``train``; on ``test`` forecast from ``start_hours`` to its end given its speeds.

    Models: ``thermal_wear`` given the planned speeds; ``thermal_wear_duty`` not given them
    (the last hour's mean duty held); ``thermal_no_wear`` (planned speeds, friction constant);
    ``persistence``. Returns per model the temperature error (K) at each horizon, the RMSE over
    the whole forecast, and the forecast minutes to ``limit_k`` vs the observed ones."""
    start = int(np.searchsorted(test.hours, start_hours - 1e-9))
    now, future = test.temperature[start], test.slice(start + 1)
    past = test.slice(max(0, start - 59), start + 1)  # the last hour: the duty cycle if no plan
    duty = MinuteSeries(
        future.temperature,
        np.full(len(future), past.speed_abs.mean()),
        np.full(len(future), past.speed_sq.mean()),
        future.hours,
    )
    wear = ThermalForecaster.fit(train, wear=True)
    models = {
        "thermal_wear": wear.forecast(now, future),
        "thermal_wear_duty": wear.forecast(now, duty),
        "thermal_no_wear": ThermalForecaster.fit(train, wear=False).forecast(now, future),
        "persistence": np.full(len(future), now),
    }
    observed_ttl = time_to_limit(future.temperature, limit_k)
    out: dict[str, object] = {"observed_minutes_to_limit": observed_ttl, "limit_k": limit_k}
    for name, path in models.items():
        errors = {}
        for h in horizons_h:
            k = min(len(future), round(h * 60)) - 1
            errors[f"{h:g}"] = round(float(path[k] - future.temperature[k]), 2)
        out[name] = {
            "error_k": errors,
            "rmse_k": round(float(np.sqrt(np.mean((path - future.temperature) ** 2))), 2),
            "minutes_to_limit": time_to_limit(path, limit_k),
        }
    return out
