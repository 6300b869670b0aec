"""Anomaly detection on calibrated surprise, per asset.

Calibration. The first ``warmup_steps`` are skipped and the next ``calibration_steps`` (nominal)
are kept. They are cut into blocks of :data:`BLOCK` steps; blocks whose median combined score is
over ``steady_factor`` times the median block's are a transient (a start-up swing, say) and are
left out: the detector calibrates on the steady part. From the steady steps: a robust centre and
scale (median, MAD) for each sensor residual and for the latent distance, giving calibrated
units ``u``; then one threshold per statistic below.

Statistics, each divided by its threshold (1 = alarm level; ``score`` is the largest):

* ``instant``: ``c = mean_s(u_s^2) + w * u_latent^2``, threshold at the ``1 - false_alarm_rate``
  quantile of nominal ``c``, extrapolated from the 90% and 99% quantiles with an exponential
  tail (300 steps cannot show a 1e-4 quantile), times ``margin``. Alarm on 2 steps in a row
  above, or one step above 3 times (abrupt faults);
* ``peak``: ``max_s |u_s|`` (a fault in one sensor of many is diluted in the mean), same rule;
* ``jump``: per sensor, ``|r_s(t) - r_s(t-1)|`` over its own threshold: a residual that changes
  abruptly. A model's own error drifts smoothly with the state, a sensor bias, a knock or a
  stuck reading changes it in one step, so this sees steps far below a poor model's error
  level; one step above the threshold is an alarm;
* ``cusum``: ``S = max(0, S + c - k)`` (k: the ``cusum_k_quantile`` of nominal ``c``) above
  ``h`` (persistent moderate shifts: a heavier pole, more friction, a weaker actuator);
* ``ewma``: per sensor, EWMAs of the signed ``u_s`` at two speeds (``ewma_lambda`` and a
  quarter of it), i.e. the mean residual over ~1 s and ~4 s: bias, drift;
* ``stuck``: per sensor, the number of consecutive identical readings, against the longest run
  seen in calibration; only for sensors that moved during calibration;
* ``consistency``: per sensor, EWMAs (the two speeds of ``ewma``) of the residual of its
  relations to the other sensors (:mod:`twin.worker.consistency`, fitted on the calibration
  steps: a position's change against its velocity readings), calibrated like ``ewma``: a sensor
  that drifts, is biased or sticks while the others do not;
* ``horizon``: the open-loop residuals (:attr:`Surprise.horizons`: the reading re-predicted from
  ``k`` steps back through the actions applied since, for each ``k`` of ``horizons``), each
  calibrated per horizon and sensor (median, MAD) into units ``v``; per horizon and sensor, the
  mean of ``v^2`` over the last ``horizon_window`` steps against its own threshold (the
  ``1 - false_alarm_rate / (K S)`` quantile of its nominal values, extrapolated as above, times
  ``margin``, and at least its nominal mean plus ``ewma_sigmas`` times the window mean's spread
  from the long-run variance); the statistic is the largest ratio. A physical fault changes the dynamics by
  little per step but the change accumulates over ``k`` steps; averaging over ~1 s removes the
  model's own fast error, and each horizon and sensor against its own nominal level keeps a
  fault that shows in one sensor at one horizon from being diluted by the others.

Range limits. A reading within ``limit_margin`` of either end of its sensor's range (``limits``,
from the schema; a wrapped angle has none) is an envelope event, not a fault: the detector
pauses there and for ``limit_holdoff_steps`` after (verdict reason :data:`AT_LIMIT`, then
:data:`AFTER_LIMIT`), then starts its path statistics afresh. An end a sensor sits at for more
than :data:`LIMIT_USUAL_SHARE` of the steps is its operating point, not an end stop, and stops
pausing it. A reading heading for an end it would reach within ``limit_lead_steps`` at its last
step's rate, within ``limit_approach`` of the span from it, pauses the detector too (reason
:data:`APPROACHING_LIMIT`, no contact): on long nominal cart-pole runs every false alarm left
with a profile was the one-step evidence in the second before a cart at 7-10 m/s hit its end
stop.

A reference profile (:mod:`twin.worker.profile`) rescales each ratio to an alarm level checked
on long nominal operation; without one, the thresholds are per-asset extrapolations.

The path statistics (CUSUM, EWMA) get thresholds from their nominal paths: ``margin`` times their
peak, and at least a floor from their measured spread. The whole state is JSON
(:meth:`Detector.to_json`), stored with each latent snapshot, so a restarted worker carries on
calibrated.
"""

from __future__ import annotations

import base64
import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from twin.worker.config import DetectorConfig
from twin.worker.consistency import Consistency
from twin.worker.surprise import Surprise

if TYPE_CHECKING:
    from twin.worker.profile import DetectorProfile

log = logging.getLogger(__name__)

_MAD = 1.4826
BLOCK = 30
"""Calibration block (control steps) for finding the steady segment."""
MIN_WINDOWS = 10
"""Fewest ``horizon_window`` spans of nominal open-loop evidence that arm the ``horizon`` statistic."""
STATE_VERSION = 5
"""4: the calibration buffers and the open-loop window are packed float64 (base64), not lists;
5: the ``consistency`` statistic's relations and EWMAs, and the readings before calibration's."""
LIMIT_USUAL_SHARE = 0.2
"""A range end a sensor has sat at for more than this share of the asset's steps is its normal
operating point (a non-negative RMS near 0, a torque at the motor's limit under a speed
controller), not an end stop: the detector stops pausing for it."""
LIMIT_MIN_SEEN = 30
"""Steps seen before :data:`LIMIT_USUAL_SHARE` applies (until then every end pauses)."""
STATISTICS = ("instant", "peak", "jump", "cusum", "ewma", "stuck", "horizon", "consistency")
AT_LIMIT = "at a range limit"
"""A verdict's reason while a reading is at its sensor's range limit (see :class:`Detector`)."""
AFTER_LIMIT = "after a range limit"
APPROACHING_LIMIT = "approaching a range limit"
"""A verdict's reason while a reading heads fast for its range limit (no contact yet)."""


@dataclass(slots=True)
class Verdict:
    """The detector's reading of one step: ``ratios`` per statistic (1 = its threshold)."""

    score: float
    alarm: bool
    contributions: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    ratios: dict[str, float] = field(default_factory=dict)


def pack(rows: list[np.ndarray] | deque[np.ndarray], width: int | None = None) -> dict[str, Any]:
    """Equal-length float rows -> ``{"shape": [n, w], "f8": base64 of little-endian float64}``.

    A detector's snapshot carries up to ``calibration_steps`` rows of evidence (900 x 25 values):
    as JSON lists that was ~160 kB per snapshot, and encoding it (C code, holding the GIL) in the
    store's writer thread stalled the live loop by tens of ms; packed it is a memcpy and base64.
    NaN and inf survive."""
    w = width if width is not None else (len(rows[0]) if len(rows) else 0)
    array = np.asarray(rows, dtype="<f8").reshape(len(rows), w)
    return {"shape": [len(rows), w], "f8": base64.b64encode(array.tobytes()).decode("ascii")}


def unpack(data: dict[str, Any] | None) -> list[np.ndarray]:
    """:func:`pack` back to rows (copies: the detector keeps and changes them)."""
    if not data:
        return []
    n, w = (int(v) for v in data["shape"])
    array = np.frombuffer(base64.b64decode(data["f8"]), dtype="<f8").reshape(n, w)
    return [row.copy() for row in array]


def robust_scale(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and MAD-based scale per column (floored by a fifth of the RMS, and 1e-6)."""
    centre = np.median(values, axis=0)
    scale = _MAD * np.median(np.abs(values - centre), axis=0)
    rms = np.sqrt(np.mean((values - centre) ** 2, axis=0))
    return centre, np.maximum(np.maximum(scale, 0.2 * rms), 1e-6)


def tail_threshold(values: np.ndarray, rate: float) -> float:
    """The ``1 - rate`` quantile of non-negative ``values``, extrapolated beyond the sample by an
    exponential tail through the 90% and 99% quantiles (never below the sample maximum's
    quantile when the sample is large enough to show it)."""
    q90, q99 = np.quantile(values, [0.9, 0.99])
    extrapolated = q99 + (q99 - q90) * math.log10(0.01 / rate) if rate < 0.01 else q99
    direct = float(np.quantile(values, 1.0 - rate)) if len(values) * rate >= 1 else 0.0
    return float(max(extrapolated, direct, 1e-9))


def steady_rows(scores: np.ndarray, factor: float) -> np.ndarray:
    """Mask of the rows outside transient blocks (see the module docstring)."""
    keep = np.ones(len(scores), dtype=bool)
    n_blocks = len(scores) // BLOCK
    if n_blocks < 3:
        return keep
    medians = np.array([np.median(scores[b * BLOCK : (b + 1) * BLOCK]) for b in range(n_blocks)])
    typical = float(np.median(medians))
    for b, level in enumerate(medians):
        if level > factor * max(typical, 1e-12):
            keep[b * BLOCK : (b + 1) * BLOCK] = False
    return keep


def long_run_variance(units: np.ndarray, lags: int = 30) -> np.ndarray:
    """Per column of (N, S): variance of the mean of autocorrelated values times N (Bartlett
    weights up to ``lags``, and at least what an AR(1) with the lag-1 correlation gives): what
    an EWMA of them averages down to."""
    centred = units - units.mean(axis=0)
    n = len(centred)
    out = np.mean(centred**2, axis=0)
    for k in range(1, min(lags, n - 1) + 1):
        gamma = np.mean(centred[k:] * centred[:-k], axis=0)
        out = out + 2 * (1 - k / (lags + 1)) * gamma
    gamma0 = np.maximum(np.mean(centred**2, axis=0), 1e-12)
    rho = np.clip(np.mean(centred[1:] * centred[:-1], axis=0) / gamma0, 0.0, 0.98)
    return np.maximum(out, gamma0 * (1 + rho) / (1 - rho))  # at least an AR(1)'s


def ewma_limits(units: np.ndarray, lambdas: tuple[float, ...], margin: float, sigmas: float) -> np.ndarray:
    """Nominal units (N, S) -> (len(lambdas), S) alarm limits of their EWMAs at each weight:
    ``margin`` times the EWMA's nominal peak, and at least ``sigmas`` times its spread. The
    units are autocorrelated (a model's errors, a relation's): the spread follows their
    long-run variance, not their plain one."""
    long_run = long_run_variance(units)
    out = np.zeros((len(lambdas), units.shape[1]))
    for j, lam in enumerate(lambdas):
        ewma, peaks = np.zeros(units.shape[1]), np.zeros(units.shape[1])
        for row in units:
            ewma = (1 - lam) * ewma + lam * row
            peaks = np.maximum(peaks, np.abs(ewma))
        spread = np.sqrt(lam / (2 - lam) * long_run)
        out[j] = np.maximum(np.maximum(peaks * margin, sigmas * spread), 1e-9)
    return out


def wrap(change: np.ndarray, periods: np.ndarray) -> np.ndarray:
    """Changes of wrapped residuals brought into (-period/2, period/2]: a prediction error of an
    angle that crosses +-pi flips sign without anything happening."""
    finite = np.isfinite(periods)
    if not finite.any():
        return change
    p = np.where(finite, periods, 1.0)
    return np.where(finite, change - p * np.round(change / p), change)


def stuck_runs(observed: np.ndarray) -> np.ndarray:
    """Longest run of consecutive identical readings per column of (N, S)."""
    same = np.vstack([np.zeros((1, observed.shape[1]), bool), observed[1:] == observed[:-1]])
    longest = np.zeros(observed.shape[1], dtype=int)
    run = np.zeros(observed.shape[1], dtype=int)
    for row in same:
        run = np.where(row, run + 1, 0)
        longest = np.maximum(longest, run)
    return longest


class Detector:
    """Calibrates on an asset's nominal steps, then flags anomalies (see the module docstring)."""

    def __init__(
        self,
        config: DetectorConfig,
        sensors: tuple[str, ...],
        profile: DetectorProfile | None = None,
        limits: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.config = config
        self.sensors = tuple(sensors)
        self.profile = profile
        """The model's reference profile (:mod:`twin.worker.profile`): each statistic's ratio is
        divided by its ``scale`` (the alarm level), and raised to its ``exponent`` in ``score``."""
        self.alarm_scale = dict(profile.scale) if profile is not None else {}
        self.exponent = dict(profile.exponent) if profile is not None else {}
        self.limit_low = self.limit_high = None
        """(S,) readings at or beyond these are at a range limit (None: no limits known)."""
        if limits is not None:
            low, high = (np.asarray(v, dtype=np.float64) for v in limits)
            span = np.where(np.isfinite(high - low), high - low, 0.0)
            self.limit_low = low + config.limit_margin * span
            self.limit_high = high - config.limit_margin * span
            self.approach = config.limit_approach * span
            """(S,) how far from an end a reading heading for it may pause the detector."""
        self.limit_prev: np.ndarray | None = None
        """The previous reading, for the rate at which a reading approaches an end."""
        self.hold = 0
        """Steps left in the pause after a range limit."""
        n = len(self.sensors)
        self.limit_seen = 0
        self.limit_hits = np.zeros((2, n), dtype=int)
        """Steps seen with readings, and of them those at each (low, high) end of each sensor."""
        self.lambdas = (config.ewma_lambda, config.ewma_lambda / 4)
        self.steps = 0
        self._calib: list[np.ndarray] = []
        self._calib_obs: list[np.ndarray] = []
        self.centre: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.c_threshold = self.peak_threshold = self.cusum_k = self.cusum_h = 0.0
        self.jump_scale = np.ones(n)
        self.jump_threshold = np.ones(n)
        """Per sensor: a model's residual may jump often on one sensor (an angle's wrap)."""
        self.last_residual: np.ndarray | None = None
        self.last_step: int | None = None
        self.periods = np.full(n, np.inf)
        """Per sensor, the period of its residual (an angle's wrap); from the evidence."""
        self.ewma_limit = np.ones((2, n))
        self.stuck_limit = np.zeros(n, dtype=int)
        """Consecutive identical readings that are an alarm (0: not checked for that sensor)."""
        self.cusum = 0.0
        self.ewma = np.zeros((2, n))
        self.above = 0
        self.run = np.zeros(n, dtype=int)
        self.last_obs: np.ndarray | None = None
        self.kept = 0
        self._calib_h: list[np.ndarray] = []
        self.h_centre: np.ndarray | None = None
        """(K * S,) centre and scale of the open-loop residuals; None: no open-loop evidence."""
        self.h_scale: np.ndarray | None = None
        self.h_threshold = np.ones(0)
        """(K * S,) limit of each horizon and sensor's windowed mean of ``v^2``."""
        self.h_recent: deque[np.ndarray] = deque(maxlen=config.horizon_window)
        self._calib_prev: list[np.ndarray] = []
        """Per calibration row, the reading of the step before (NaN: not contiguous)."""
        self.relations: Consistency | None = None
        """The sensors' relations to one another (``consistency``); None: not fitted."""
        self.k_centre = np.zeros(n)
        self.k_scale = np.ones(n)
        """(S,) centre and scale of the consistency residuals (calibrated units)."""
        self.k_limit = np.ones((2, n))
        self.k_ewma = np.zeros((2, n))

    @property
    def armed(self) -> bool:
        return self.centre is not None

    def units(self, evidence: np.ndarray) -> np.ndarray:
        """Raw evidence (..., S + 1) -> calibrated units."""
        assert self.centre is not None and self.scale is not None
        return (evidence - self.centre) / self.scale

    def combined(self, units: np.ndarray) -> np.ndarray:
        s = len(self.sensors)
        cfg = self.config
        return (
            cfg.sensor_weight * np.mean(units[..., :s] ** 2, axis=-1) + cfg.latent_weight * units[..., s] ** 2
        )

    def calibrate(
        self,
        evidence: np.ndarray,
        observed: np.ndarray | None = None,
        horizons: np.ndarray | None = None,
        previous: np.ndarray | None = None,
    ) -> None:
        """Set centre, scale and thresholds from nominal evidence (N, S + 1), readings (N, S),
        open-loop residuals (N, K * S; NaN where unknown) and the reading of the step before
        each row (N, S; NaN where that step was not seen)."""
        cfg = self.config
        s = len(self.sensors)
        self.centre, self.scale = robust_scale(evidence)
        keep = steady_rows(self.combined(self.units(evidence)), cfg.steady_factor)
        self.kept = int(keep.sum())
        steady = evidence[keep]
        self.centre, self.scale = robust_scale(steady)
        units = self.units(steady)
        c = self.combined(units)
        self.c_threshold = tail_threshold(c, cfg.false_alarm_rate) * cfg.margin
        self.peak_threshold = (
            tail_threshold(np.abs(units[:, :s]).max(axis=1), cfg.false_alarm_rate) * cfg.margin
        )
        self.cusum_k = float(np.quantile(c, cfg.cusum_k_quantile))
        both = keep[1:] & keep[:-1]
        jumps = wrap(np.diff(evidence[:, :s], axis=0), self.periods)[both]
        _, self.jump_scale = robust_scale(jumps)
        rate = cfg.false_alarm_rate / s
        self.jump_threshold = np.array(
            [tail_threshold(np.abs(jumps[:, k] / self.jump_scale[k]), rate) * cfg.margin for k in range(s)]
        )
        path, peak = 0.0, 0.0
        for value in c:
            path = max(0.0, path + value - self.cusum_k)
            peak = max(peak, path)
        self.cusum_h = float(max(peak * cfg.margin, 20.0 * self.cusum_k, 5.0))
        self.ewma_limit = ewma_limits(units[:, :s], self.lambdas, cfg.margin, cfg.ewma_sigmas)
        self.stuck_limit = np.zeros(s, dtype=int)
        if observed is not None and len(observed) == len(evidence):
            longest = stuck_runs(observed[keep])
            moving = longest < max(3, len(steady) // 20)
            limit = np.maximum(np.ceil((longest + 1) * cfg.margin), cfg.stuck_min_steps).astype(int)
            self.stuck_limit = np.where(moving, limit, 0)
        self.h_centre = self.h_scale = None
        if horizons is not None and len(horizons) == len(evidence):
            self.calibrate_horizons(np.asarray(horizons, dtype=np.float64)[keep])
        self.relations = None
        if observed is not None and previous is not None and len(previous) == len(evidence) == len(observed):
            self.calibrate_consistency(np.asarray(previous, np.float64)[keep], observed[keep])
        self.reset_statistics()

    def calibrate_consistency(self, previous: np.ndarray, observed: np.ndarray) -> None:
        """Fit the sensors' relations on consecutive nominal readings (N, S) SI and set the
        ``consistency`` statistic's centre, scale and EWMA limits as ``ewma``'s are set."""
        cfg = self.config
        try:
            relations = Consistency.fit(previous, observed, np.isfinite(self.periods))
        except (np.linalg.LinAlgError, ValueError, FloatingPointError) as exc:
            log.warning("detector: no relations between the sensors could be fitted (%s)", exc)
            return
        if relations is None:
            return
        rows = np.isfinite(previous).all(axis=1)
        residuals = relations.residuals(previous[rows], observed[rows])
        self.relations = relations
        self.k_centre, self.k_scale = robust_scale(residuals)
        units = (residuals - self.k_centre) / self.k_scale
        self.k_limit = ewma_limits(units, self.lambdas, cfg.margin, cfg.ewma_sigmas)

    def horizon_units(self, flat: np.ndarray) -> np.ndarray:
        """Open-loop residuals (..., K * S) -> squared calibrated units ``v^2`` (..., K * S)."""
        assert self.h_centre is not None and self.h_scale is not None
        return ((flat - self.h_centre) / self.h_scale) ** 2

    def calibrate_horizons(self, flat: np.ndarray) -> None:
        """Centre, scale and thresholds of the ``horizon`` statistic from nominal open-loop
        residuals (N, K * S); left off when fewer than half the steps have them all, or fewer than
        :data:`MIN_WINDOWS` windows (a short calibration cannot show a windowed mean's tail)."""
        cfg = self.config
        rows = np.isfinite(flat).all(axis=1)
        if rows.sum() < max(cfg.horizon_window * MIN_WINDOWS, len(flat) // 2):
            return
        self.h_centre, self.h_scale = robust_scale(flat[rows])
        v2 = self.horizon_units(flat[rows])
        w = cfg.horizon_window
        kernel = np.ones(w) / w
        rate = cfg.false_alarm_rate / v2.shape[1]
        tails = np.array(
            [
                tail_threshold(np.convolve(v2[:, j], kernel, mode="valid"), rate) * cfg.margin
                for j in range(v2.shape[1])
            ]
        )
        # a few hundred steps hold few independent windows: at least the mean plus ewma_sigmas
        # of the window mean's spread, from the long-run variance (v^2 is autocorrelated)
        spread = np.sqrt(long_run_variance(v2) / w)
        self.h_threshold = np.maximum(tails, v2.mean(axis=0) + cfg.ewma_sigmas * spread)

    def approaching(self, reading: np.ndarray, stops: np.ndarray) -> np.ndarray:
        """(S,) readings heading for an end stop (``stops`` (2, S): which ends count) that they
        would reach within ``limit_lead_steps`` at the rate since the previous reading, from
        within ``limit_approach`` of the span."""
        prev, lead = self.limit_prev, self.config.limit_lead_steps
        if prev is None or lead == 0 or self.limit_low is None or self.limit_high is None:
            return np.zeros(len(reading), dtype=bool)
        with np.errstate(invalid="ignore"):
            rate = np.where(np.isfinite(reading) & np.isfinite(prev), reading - prev, 0.0)
            to_low, to_high = reading - self.limit_low, self.limit_high - reading
            low = stops[0] & (rate < 0) & (to_low < self.approach) & (to_low <= -rate * lead)
            high = stops[1] & (rate > 0) & (to_high < self.approach) & (to_high <= rate * lead)
        return low | high

    def update(self, surprise: Surprise) -> Verdict:
        """Feed one step; the verdict says whether it is anomalous and which sensors contribute."""
        cfg = self.config
        self.steps += 1
        evidence = np.append(surprise.residual, surprise.latent)
        if surprise.periods is not None:
            self.periods = np.asarray(surprise.periods, dtype=np.float64)
        observed = surprise.observed
        s = len(self.sensors)
        if observed is not None and self.limit_low is not None and self.limit_high is not None:
            reading = np.asarray(observed)
            ends = np.stack([reading <= self.limit_low, reading >= self.limit_high])
            self.limit_seen += 1
            self.limit_hits += ends
            stops = np.ones_like(ends)
            if self.limit_seen >= LIMIT_MIN_SEEN:  # an end it usually sits at is no end stop
                stops = self.limit_hits <= LIMIT_USUAL_SHARE * self.limit_seen
                ends &= stops
            at = ends.any(axis=0)
            near = self.approaching(reading, stops)
            self.limit_prev = reading.astype(np.float64, copy=True)
            pausing = at if at.any() else near  # a contact, else a reading running into an end
            # judged before the evidence: a contact is about the reading, so a skipped step or a
            # non-finite residual in the middle of one does not end it (one event per contact)
            if pausing.any() or self.hold > 0:
                # an end stop's impact is outside what the model learned, and not a fault: pause,
                # and start the path statistics afresh after it
                self.hold = cfg.limit_holdoff_steps if pausing.any() else self.hold - 1
                if surprise.step is not None:
                    self.last_step = surprise.step
                self.last_residual, self.last_obs = None, None
                self.run[:] = 0
                if self.armed:
                    self.reset_statistics()
                if not pausing.any():
                    return Verdict(0.0, False, reason=AFTER_LIMIT)
                which = {n: 1.0 for n, a in zip(self.sensors, pausing, strict=True) if a}
                return Verdict(0.0, False, which, AT_LIMIT if at.any() else APPROACHING_LIMIT)
        if not np.isfinite(evidence).all():
            self.last_obs = None  # the next reading's predecessor is not known either
            return Verdict(0.0, False, reason="non-finite evidence")
        if surprise.step is not None:
            gap = self.last_step is not None and surprise.step - self.last_step != 1
            self.last_step = surprise.step
            if gap:  # a prediction several steps old: not one-step evidence, skip it
                self.last_residual, self.last_obs = None, None
                return Verdict(0.0, False, reason="skipped steps")
        previous = self.last_obs  # the reading one step before (None: a gap, a pause, the start)
        if observed is not None:
            observed = np.asarray(observed, dtype=np.float64)
            if self.last_obs is not None:
                self.run = np.where(observed == self.last_obs, self.run + 1, 0)
            self.last_obs = observed
        flat = None if surprise.horizons is None else np.asarray(surprise.horizons, np.float64).ravel()
        if not self.armed:
            if self.steps > cfg.warmup_steps:
                self._calib.append(evidence)
                if observed is not None:
                    self._calib_obs.append(observed)
                    self._calib_prev.append(np.full(s, np.nan) if previous is None else previous)
                if flat is not None:
                    self._calib_h.append(flat)
                if len(self._calib) >= cfg.calibration_steps:
                    obs = np.asarray(self._calib_obs) if len(self._calib_obs) == len(self._calib) else None
                    hor = np.asarray(self._calib_h) if len(self._calib_h) == len(self._calib) else None
                    prev = np.asarray(self._calib_prev) if obs is not None else None
                    if prev is not None and len(prev) != len(obs):  # a state restored mid-way
                        prev = None
                    self.calibrate(np.asarray(self._calib), obs, hor, prev)
                    self._calib, self._calib_obs, self._calib_h, self._calib_prev = [], [], [], []
            return Verdict(0.0, False, reason="calibrating")
        units = self.units(evidence)
        c = float(self.combined(units))
        peak = float(np.abs(units[:s]).max())
        residual = evidence[:s]
        jumps = np.zeros(s)
        if self.last_residual is not None:
            change = wrap(residual - self.last_residual, self.periods)
            jumps = np.abs(change / self.jump_scale) / self.jump_threshold
        self.last_residual = residual
        self.cusum = max(0.0, self.cusum + c - self.cusum_k)
        for j, lam in enumerate(self.lambdas):
            self.ewma[j] = (1 - lam) * self.ewma[j] + lam * units[:s]
        ewma_ratio = np.abs(self.ewma) / self.ewma_limit
        checked = self.stuck_limit > 0
        stuck_ratio = np.where(checked, self.run / np.maximum(self.stuck_limit, 1), 0.0)
        consistency = np.zeros(s)
        if self.relations is not None and previous is not None and observed is not None:
            k_units = (self.relations.residuals(previous, observed) - self.k_centre) / self.k_scale
            for j, lam in enumerate(self.lambdas):
                self.k_ewma[j] = (1 - lam) * self.k_ewma[j] + lam * k_units
        if self.relations is not None:
            consistency = (np.abs(self.k_ewma) / self.k_limit).max(axis=0)
        horizon = 0.0
        horizon_share = np.zeros(s)
        known = self.h_centre is not None and flat is not None and flat.shape == self.h_centre.shape
        if known and flat is not None and np.isfinite(flat).all():
            self.h_recent.append(self.horizon_units(flat))
            if len(self.h_recent) == self.h_recent.maxlen:
                by = np.mean(self.h_recent, axis=0) / self.h_threshold
                horizon = float(by.max())
                horizon_share = by.reshape(-1, s).max(axis=0) ** 2  # per sensor, its worst horizon
        every = {
            "instant": c / self.c_threshold,
            "peak": peak / self.peak_threshold,
            "jump": float(jumps.max()),
            "cusum": self.cusum / self.cusum_h,
            "ewma": float(ewma_ratio.max()),
            "stuck": float(stuck_ratio.max()),
            "horizon": horizon,
            "consistency": float(consistency.max()),
        }
        ratios = {k: every[k] / self.alarm_scale.get(k, 1.0) for k in cfg.statistics}
        instant = max(ratios.get("instant", 0.0), ratios.get("peak", 0.0))
        self.above = self.above + 1 if instant > 1.0 else 0
        jump = instant > 3.0  # one step far outside: an abrupt fault
        alarm = (
            self.above >= 2
            or jump
            or ratios.get("jump", 0.0) > 1.0
            or ratios.get("cusum", 0.0) > 1.0
            or ratios.get("ewma", 0.0) > 1.0
            or ratios.get("stuck", 0.0) >= 1.0
            or ratios.get("horizon", 0.0) > 1.0
            or ratios.get("consistency", 0.0) > 1.0
        )
        # the score ranks evidence: each statistic on its profile's common footing (1 = alarm)
        levels = {k: max(v, 0.0) ** self.exponent.get(k, 1.0) for k, v in ratios.items()}
        reason = max(levels, key=lambda k: levels[k])
        shares = np.append(
            units[:s] ** 2 / s
            + ewma_ratio.max(axis=0) ** 2
            + stuck_ratio**2
            + jumps**2
            + horizon_share
            + consistency**2,
            cfg.latent_weight * units[s] ** 2,
        )
        total = float(shares.sum()) or 1.0
        names = (*self.sensors, "latent")
        contributions = {n: round(float(v / total), 4) for n, v in zip(names, shares, strict=True)}
        return Verdict(float(max(levels.values())), alarm, contributions, reason, ratios)

    def reset_statistics(self) -> None:
        """Start CUSUM and EWMA afresh (after an anomaly is declared over)."""
        self.cusum, self.above = 0.0, 0
        self.ewma = np.zeros((2, len(self.sensors)))
        self.k_ewma = np.zeros((2, len(self.sensors)))
        self.h_recent.clear()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": STATE_VERSION,
            "units": self.config.residual_units,
            "steps": self.steps,
            "calib": pack(self._calib),
            "calib_obs": pack(self._calib_obs),
            "calib_h": pack(self._calib_h),
            "calib_prev": pack(self._calib_prev, len(self.sensors)),
            "run": self.run.tolist(),
            "last_obs": None if self.last_obs is None else self.last_obs.tolist(),
            "last_residual": None if self.last_residual is None else self.last_residual.tolist(),
            "last_step": self.last_step,
            "hold": self.hold,
            "limit_seen": self.limit_seen,
            "limit_hits": self.limit_hits.tolist(),
            "limit_prev": None if self.limit_prev is None else self.limit_prev.tolist(),
        }
        if self.armed:
            assert self.scale is not None and self.centre is not None
            out.update(
                centre=self.centre.tolist(),
                scale=self.scale.tolist(),
                c_threshold=self.c_threshold,
                peak_threshold=self.peak_threshold,
                jump_scale=self.jump_scale.tolist(),
                jump_threshold=self.jump_threshold.tolist(),
                cusum_k=self.cusum_k,
                cusum_h=self.cusum_h,
                ewma_limit=self.ewma_limit.tolist(),
                stuck_limit=self.stuck_limit.tolist(),
                cusum=self.cusum,
                ewma=self.ewma.tolist(),
                above=self.above,
                kept=self.kept,
            )
            if self.relations is not None:
                out.update(
                    relations=self.relations.to_json(),
                    k_centre=self.k_centre.tolist(),
                    k_scale=self.k_scale.tolist(),
                    k_limit=self.k_limit.tolist(),
                    k_ewma=self.k_ewma.tolist(),
                )
            if self.h_centre is not None and self.h_scale is not None:
                out.update(
                    h_centre=self.h_centre.tolist(),
                    h_scale=self.h_scale.tolist(),
                    h_threshold=self.h_threshold.tolist(),
                    h_recent=pack(self.h_recent, len(self.h_centre)),
                )
        return out

    @classmethod
    def from_json(
        cls,
        config: DetectorConfig,
        sensors: tuple[str, ...],
        data: dict[str, Any],
        profile: DetectorProfile | None = None,
        limits: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Detector:
        """Restore :meth:`to_json`; state from another version of the detector, or calibrated on
        residuals in other units (``residual_units``; states written before it was recorded are
        in training stds), starts afresh (calibrating again) instead of being misread.
        ``profile`` and ``limits`` come from the model, not the state."""
        detector = cls(config, sensors, profile, limits)
        if data.get("version") != STATE_VERSION:
            return detector
        if data.get("units", "training_std") != config.residual_units:  # calibrated on other evidence
            return detector
        f64 = np.float64
        detector.steps = int(data.get("steps", 0))
        detector._calib = unpack(data.get("calib"))
        detector._calib_obs = unpack(data.get("calib_obs"))
        detector._calib_h = unpack(data.get("calib_h"))
        detector._calib_prev = unpack(data.get("calib_prev"))
        detector.run = np.asarray(data.get("run", detector.run), dtype=int)
        if data.get("last_obs") is not None:
            detector.last_obs = np.asarray(data["last_obs"], dtype=f64)
        detector.last_step = data.get("last_step")
        detector.hold = int(data.get("hold", 0))
        detector.limit_seen = int(data.get("limit_seen", 0))
        if data.get("limit_hits") is not None:
            detector.limit_hits = np.asarray(data["limit_hits"], dtype=int)
        if data.get("limit_prev") is not None:
            detector.limit_prev = np.asarray(data["limit_prev"], dtype=f64)
        if data.get("last_residual") is not None:
            detector.last_residual = np.asarray(data["last_residual"], dtype=f64)
        if "centre" in data:
            detector.centre = np.asarray(data["centre"], dtype=f64)
            detector.scale = np.asarray(data["scale"], dtype=f64)
            detector.c_threshold = float(data["c_threshold"])
            detector.peak_threshold = float(data["peak_threshold"])
            detector.jump_scale = np.asarray(data["jump_scale"], dtype=f64)
            detector.jump_threshold = np.asarray(data["jump_threshold"], dtype=f64)
            detector.cusum_k = float(data["cusum_k"])
            detector.cusum_h = float(data["cusum_h"])
            detector.ewma_limit = np.asarray(data["ewma_limit"], dtype=f64)
            detector.stuck_limit = np.asarray(data["stuck_limit"], dtype=int)
            detector.cusum = float(data["cusum"])
            detector.ewma = np.asarray(data["ewma"], dtype=f64)
            detector.above = int(data["above"])
            detector.kept = int(data.get("kept", 0))
        if "relations" in data:
            detector.relations = Consistency.from_json(data["relations"])
            detector.k_centre = np.asarray(data["k_centre"], dtype=f64)
            detector.k_scale = np.asarray(data["k_scale"], dtype=f64)
            detector.k_limit = np.asarray(data["k_limit"], dtype=f64)
            detector.k_ewma = np.asarray(data["k_ewma"], dtype=f64)
        if "h_centre" in data:
            detector.h_centre = np.asarray(data["h_centre"], dtype=f64)
            detector.h_scale = np.asarray(data["h_scale"], dtype=f64)
            detector.h_threshold = np.asarray(data["h_threshold"], dtype=f64)
            detector.h_recent.extend(unpack(data["h_recent"]))
        return detector
