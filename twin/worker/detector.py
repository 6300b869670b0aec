"""Anomaly detection on calibrated surprise: a threshold, CUSUM for persistent shifts, EWMA for drift.

Per asset, the first ``warmup_steps`` are skipped and the next ``calibration_steps`` (nominal)
calibrate: a robust centre and scale per sensor residual and for the latent distance; the
combined score ``c = mean_s(u_s^2) + w * u_latent^2`` (``u``: calibrated residuals); then the
thresholds, each at the ``1 - false_alarm_rate`` quantile of its nominal statistic times
``margin``:

* ``c`` above its threshold on 2 consecutive steps (abrupt faults: 1-5 steps);
* CUSUM ``S = max(0, S + c - k)`` above ``h`` (persistent moderate shifts);
* per sensor, EWMA of the signed ``u_s`` beyond ``L_s`` (slow drift, bias).

``score`` (published as surprise) is the largest statistic over its threshold: 1 = alarm level.
The whole state is JSON (:meth:`Detector.to_json`), stored with each latent snapshot, so a
restarted worker carries on calibrated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twin.worker.config import DetectorConfig
from twin.worker.surprise import Surprise

_MAD = 1.4826


@dataclass(slots=True)
class Verdict:
    """The detector's reading of one step."""

    score: float
    alarm: bool
    contributions: dict[str, float] = field(default_factory=dict)
    reason: str = ""


def _robust(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    centre = np.median(values, axis=0)
    scale = _MAD * np.median(np.abs(values - centre), axis=0)
    rms = np.sqrt(np.mean((values - centre) ** 2, axis=0))
    return centre, np.maximum(np.maximum(scale, 0.2 * rms), 1e-6)


class Detector:
    """Calibrates on an asset's nominal steps, then flags anomalies (see the module docstring)."""

    def __init__(self, config: DetectorConfig, sensors: tuple[str, ...]) -> None:
        self.config = config
        self.sensors = sensors
        self.steps = 0
        self._calib: list[np.ndarray] = []
        self.centre: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.c_threshold = self.cusum_k = self.cusum_h = 0.0
        self.ewma_limit: np.ndarray | None = None
        self.cusum = 0.0
        self.ewma = np.zeros(len(sensors))
        self.above = 0

    @property
    def armed(self) -> bool:
        return self.centre is not None

    def _units(self, evidence: np.ndarray) -> np.ndarray:
        assert self.centre is not None and self.scale is not None
        return (evidence - self.centre) / self.scale

    def _combined(self, units: np.ndarray) -> np.ndarray:
        s = len(self.sensors)
        return np.mean(units[..., :s] ** 2, axis=-1) + self.config.latent_weight * units[..., s] ** 2

    def calibrate(self, evidence: np.ndarray) -> None:
        """Set centre, scale and thresholds from nominal evidence (N, S + 1)."""
        cfg = self.config
        self.centre, self.scale = _robust(evidence)
        units = self._units(evidence)
        c = self._combined(units)
        q = 1.0 - cfg.false_alarm_rate
        self.c_threshold = float(np.quantile(c, q) * cfg.margin)
        self.cusum_k = float(np.quantile(c, cfg.cusum_k_quantile))
        path, peak = 0.0, 0.0
        for value in c:
            path = max(0.0, path + value - self.cusum_k)
            peak = max(peak, path)
        self.cusum_h = float(max(peak * cfg.margin, 20.0 * self.cusum_k, 5.0))
        lam = cfg.ewma_lambda
        ewma = np.zeros(len(self.sensors))
        path_ewma = []
        for row in units[:, : len(self.sensors)]:
            ewma = (1 - lam) * ewma + lam * row
            path_ewma.append(ewma)
        paths = np.asarray(path_ewma)
        peaks = np.abs(paths).max(axis=0)
        # residuals are autocorrelated: the EWMA's spread is measured, not assumed
        spread = 5.0 * paths.std(axis=0)
        floor = 4.0 * np.sqrt(lam / (2 - lam))
        self.ewma_limit = np.maximum(np.maximum(peaks * cfg.margin, spread), floor)
        self.cusum, self.ewma, self.above = 0.0, np.zeros(len(self.sensors)), 0

    def update(self, surprise: Surprise) -> Verdict:
        """Feed one step; the verdict says whether it is anomalous and which sensors contribute."""
        cfg = self.config
        self.steps += 1
        evidence = np.append(surprise.residual, surprise.latent)
        if not np.isfinite(evidence).all():
            return Verdict(0.0, False, reason="non-finite evidence")
        if not self.armed:
            if self.steps > cfg.warmup_steps:
                self._calib.append(evidence)
                if len(self._calib) >= cfg.calibration_steps:
                    self.calibrate(np.asarray(self._calib))
                    self._calib = []
            return Verdict(0.0, False, reason="calibrating")
        assert self.ewma_limit is not None
        units = self._units(evidence)
        c = float(self._combined(units))
        self.cusum = max(0.0, self.cusum + c - self.cusum_k)
        s = len(self.sensors)
        self.ewma = (1 - cfg.ewma_lambda) * self.ewma + cfg.ewma_lambda * units[:s]
        self.above = self.above + 1 if c > self.c_threshold else 0
        ratios = {
            "instant": c / self.c_threshold,
            "cusum": self.cusum / self.cusum_h,
            "ewma": float(np.max(np.abs(self.ewma) / self.ewma_limit)),
        }
        jump = c > 3.0 * self.c_threshold  # one step far outside: an abrupt fault
        alarm = self.above >= 2 or jump or ratios["cusum"] > 1.0 or ratios["ewma"] > 1.0
        reason = max(ratios, key=lambda k: ratios[k])
        shares = np.append(
            units[:s] ** 2 / s + (np.abs(self.ewma) / self.ewma_limit) ** 2, cfg.latent_weight * units[s] ** 2
        )
        total = float(shares.sum()) or 1.0
        names = (*self.sensors, "latent")
        contributions = {n: round(float(v / total), 4) for n, v in zip(names, shares, strict=True)}
        return Verdict(float(max(ratios.values())), alarm, contributions, reason)

    def reset_statistics(self) -> None:
        """Start CUSUM and EWMA afresh (after an anomaly is declared over)."""
        self.cusum, self.ewma, self.above = 0.0, np.zeros(len(self.sensors)), 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"steps": self.steps, "calib": [e.tolist() for e in self._calib]}
        if self.armed:
            assert self.scale is not None and self.ewma_limit is not None and self.centre is not None
            out.update(
                centre=self.centre.tolist(),
                scale=self.scale.tolist(),
                c_threshold=self.c_threshold,
                cusum_k=self.cusum_k,
                cusum_h=self.cusum_h,
                ewma_limit=self.ewma_limit.tolist(),
                cusum=self.cusum,
                ewma=self.ewma.tolist(),
                above=self.above,
            )
        return out

    @classmethod
    def from_json(cls, config: DetectorConfig, sensors: tuple[str, ...], data: dict[str, Any]) -> Detector:
        detector = cls(config, sensors)
        detector.steps = int(data.get("steps", 0))
        detector._calib = [np.asarray(e, dtype=np.float64) for e in data.get("calib", [])]
        if "centre" in data:
            detector.centre = np.asarray(data["centre"], dtype=np.float64)
            detector.scale = np.asarray(data["scale"], dtype=np.float64)
            detector.c_threshold = float(data["c_threshold"])
            detector.cusum_k = float(data["cusum_k"])
            detector.cusum_h = float(data["cusum_h"])
            detector.ewma_limit = np.asarray(data["ewma_limit"], dtype=np.float64)
            detector.cusum = float(data["cusum"])
            detector.ewma = np.asarray(data["ewma"], dtype=np.float64)
            detector.above = int(data["above"])
        return detector
