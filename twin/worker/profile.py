"""Reference profile: the detector's alarm levels checked against long nominal operation.

Per-asset calibration (:mod:`twin.worker.detector`) sees ~30 s of one asset: enough for the
centre and spread of its evidence, not for the tail of a statistic that may alarm once an hour
(108,000 control steps). Its thresholds are extrapolations, and on long nominal runs they fire
tens of times an hour. A profile corrects them with a long reference: nominal runs of the same
model (``twin calibrate``, seeds of its own), each calibrated on its first steps exactly as a
live asset is, then run on with every statistic's ratio (1 = its per-asset threshold) recorded.

For each statistic the profile fits a Gumbel law (method of moments) to the maxima of blocks
of ``block_steps`` (of the *effective* statistic: for ``instant`` and ``peak``, which alarm on two
steps in a row above or one step three times above, ``max(min(r_t, r_{t-1}), r_t / 3)``), and
sets its ``scale`` to the level whose hourly maximum stays below it with probability
``1 - per_hour / K`` (``K`` statistics share the false-alarm budget equally). The live detector
divides each ratio by its scale: 1 is still the alarm level, now one that nominal operation
reaches about ``per_hour`` times an hour across all statistics, each as likely as another to
fire on nominal data. For ranking below the alarm level (the ``score`` an operator watches and
AUROC measures), each scaled ratio is also raised to an ``exponent`` that puts its typical
nominal block maximum at :data:`TYPICAL`: statistics whose nominal tail is long (their alarm
level far above their usual peaks) no longer look quiet next to short-tailed ones.

A profile is tied to the :class:`~twin.worker.config.DetectorConfig` it was fitted under (the
ratios are relative to thresholds that config sets); under another config it does not apply
and the detector runs on per-asset calibration alone (:meth:`DetectorProfile.mismatch` says why).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from twin.worker.config import DetectorConfig
from twin.worker.detector import STATISTICS

PROFILE_VERSION = 2
"""The detector's evidence a profile was fitted on. Bump it whenever a statistic's definition or
per-asset calibration changes (a stored profile's scales would be another distribution's): a
profile of another version is not used, and ``twin up`` refits it. 2: the ``consistency``
statistic's relations checked only at R^2 >= 0.95, on centred features, and the pause while a
reading runs fast into its range's end (2026-12-06)."""
EULER_GAMMA = 0.5772156649
MIN_SCALE = 0.5
"""A profile may tighten a per-asset threshold, but not below half of it."""
TYPICAL = 0.3
"""Where a statistic's typical nominal maximum (over a block) sits in the detector's score."""
TWO_STEP = ("instant", "peak")
"""Statistics that alarm on two steps in a row above 1, or one step above 3."""
_UNPROFILED = ("statistics", "clear_steps")
"""Config fields that do not change a ratio (which statistics alarm; when an anomaly ends)."""


def config_key(config: DetectorConfig) -> dict[str, Any]:
    """The fields of ``config`` a profile depends on, as JSON values."""
    out = {}
    for f in dataclasses.fields(config):
        if f.name in _UNPROFILED:
            continue
        value = getattr(config, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


@dataclass(frozen=True, slots=True)
class DetectorProfile:
    """Per-statistic divisors of the detector's ratios, from ``hours`` of nominal reference in
    ``runs`` runs, for ``per_hour`` false alarms an hour; ``config``: :func:`config_key` of the
    detector config it was fitted under; ``peaks``: each statistic's largest effective ratio in
    the reference (before scaling), for the record."""

    scale: dict[str, float]
    per_hour: float
    hours: float
    runs: int
    block_steps: int
    config: dict[str, Any]
    peaks: dict[str, float] = dataclasses.field(default_factory=dict)
    exponent: dict[str, float] = dataclasses.field(default_factory=dict)
    """Per statistic, the power its scaled ratio is raised to in the detector's ``score``: the
    reference's median block maximum maps to :data:`TYPICAL` for every statistic, the alarm
    level stays 1, so the score ranks evidence from different statistics on one footing."""
    version: int = PROFILE_VERSION

    def __post_init__(self) -> None:
        unknown = sorted(set(self.scale) - set(STATISTICS))
        if unknown:
            raise ValueError(f"DetectorProfile.scale: unknown statistics {unknown} (known: {STATISTICS})")
        for name in ("scale", "exponent"):
            values = getattr(self, name)
            bad = {k: v for k, v in values.items() if not (math.isfinite(v) and v > 0)}
            if bad:
                raise ValueError(f"DetectorProfile.{name} must be finite and > 0, got {bad}")
        if set(self.exponent) - set(self.scale):
            raise ValueError("DetectorProfile.exponent: statistics without a scale")
        if not (math.isfinite(self.per_hour) and self.per_hour > 0):
            raise ValueError(f"DetectorProfile.per_hour={self.per_hour!r} must be > 0")
        if not (self.hours > 0 and self.runs >= 1 and self.block_steps >= 1):
            raise ValueError(
                f"DetectorProfile: hours={self.hours!r}, runs={self.runs!r}, "
                f"block_steps={self.block_steps!r} must be positive"
            )

    def mismatch(self, config: DetectorConfig) -> str | None:
        """None if this profile applies under ``config``; else which fields differ."""
        if self.version != PROFILE_VERSION:
            return f"profile version {self.version}, this detector reads {PROFILE_VERSION}"
        now = config_key(config)
        differ = sorted(k for k in set(now) | set(self.config) if now.get(k) != self.config.get(k))
        if differ:
            return "fitted under another detector config (" + ", ".join(differ) + ")"
        unscaled = [k for k in config.statistics if k not in self.scale]
        if unscaled:  # an alarm level fitted for none of them: per-asset thresholds would alarm
            return "no alarm scale for " + ", ".join(unscaled)
        return None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorProfile:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ValueError(f"DetectorProfile: unknown fields {unknown}")
        return cls(**data)


def effective(ratios: np.ndarray) -> np.ndarray:
    """Ratios (..., T, K) in :data:`STATISTICS` order -> the value whose exceeding 1 is an alarm
    (two-step rule for :data:`TWO_STEP`, the ratio itself otherwise)."""
    out = np.array(ratios, dtype=np.float64, copy=True)
    for name in TWO_STEP:
        j = STATISTICS.index(name)
        now = out[..., j].copy()
        before = np.concatenate([np.full((*now.shape[:-1], 1), np.nan), now[..., :-1]], axis=-1)
        out[..., j] = np.fmax(np.minimum(now, before), now / 3.0)  # no step before: one step
    return out


def block_maxima(ratios: np.ndarray, block_steps: int) -> np.ndarray:
    """Effective ratios of runs (B, T, K) (NaN rows: not armed) -> (N, K) maxima of whole blocks of
    ``block_steps`` armed steps, block by block within each run."""
    rows = []
    for run in effective(ratios):
        armed = run[np.isfinite(run).all(axis=1)]
        for b in range(len(armed) // block_steps):
            rows.append(armed[b * block_steps : (b + 1) * block_steps].max(axis=0))
    return np.asarray(rows).reshape(-1, ratios.shape[-1])


def gumbel_level(maxima: np.ndarray, blocks_per_hour: float, per_hour: float) -> np.ndarray:
    """Per column of block maxima (N, K): the level an hour's maximum exceeds with probability
    ``per_hour`` under a Gumbel law fitted by moments (``N >= 2``)."""
    mean, sd = maxima.mean(axis=0), maxima.std(axis=0, ddof=1)
    beta = sd * math.sqrt(6.0) / math.pi
    mu = mean - EULER_GAMMA * beta
    return mu + beta * math.log(blocks_per_hour / -math.log1p(-per_hour))


def fit_profile(
    ratios: np.ndarray,
    config: DetectorConfig,
    control_hz: float,
    per_hour: float = 0.5,
    block_steps: int = 900,
) -> DetectorProfile:
    """Reference runs' ratios (B, T, K) (:func:`twin.worker.replay.replay_ratios`) -> a profile
    for ``per_hour`` false alarms an hour over the statistics of ``config``."""
    if not 0 < per_hour < 1:
        raise ValueError(f"per_hour={per_hour!r} must be in (0, 1) (false alarms per hour)")
    maxima = block_maxima(ratios, block_steps)
    if len(maxima) < 8:
        raise ValueError(
            f"{len(maxima)} blocks of {block_steps} armed steps in the reference: need >= 8 "
            "(longer or more runs)"
        )
    used = [STATISTICS.index(k) for k in config.statistics]
    blocks_per_hour = 3600.0 * control_hz / block_steps
    level = gumbel_level(maxima[:, used], blocks_per_hour, per_hour / len(used))
    peaks = maxima[:, used].max(axis=0)
    scale = {
        STATISTICS[j]: round(float(max(MIN_SCALE, lv, pk)), 4)
        for j, lv, pk in zip(used, level, peaks, strict=True)
    }
    typical = np.median(maxima[:, used], axis=0) / np.array(list(scale.values()))
    exponent = {}
    for j, t in zip(used, typical, strict=True):
        power = math.log(TYPICAL) / math.log(t) if 0 < t < 1 else 1.0
        exponent[STATISTICS[j]] = round(float(min(max(power, 0.05), 4.0)), 4)
    armed = np.isfinite(ratios).all(axis=-1).sum()
    return DetectorProfile(
        scale=scale,
        per_hour=per_hour,
        hours=round(float(armed / control_hz / 3600.0), 4),
        runs=int(ratios.shape[0]),
        block_steps=block_steps,
        config=config_key(config),
        peaks={STATISTICS[j]: round(float(p), 4) for j, p in zip(used, peaks, strict=True)},
        exponent=exponent,
    )
