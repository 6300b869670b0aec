"""Configuration of the twin worker: one frozen, validated dataclass."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bridge import BusConfig
from twin.store.writer import WriterConfig


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """How surprise becomes an anomaly (see :mod:`twin.worker.detector`).

    ``calibration_steps`` nominal control steps per asset (after ``warmup_steps``) set the
    thresholds at the ``1 - false_alarm_rate`` quantile of nominal statistics times ``margin``.
    ``cusum_k``: CUSUM reference as a quantile of the nominal combined score; ``ewma_lambda``:
    EWMA weight of the signed per-sensor residuals (slow drift; a second EWMA runs at a quarter
    of it), its limit at least ``ewma_sigmas`` times its nominal spread. ``steady_factor``:
    calibration blocks whose median score exceeds this times the typical block's are left out
    (start-up transients). ``stuck_min_steps``: fewest identical readings in a row that can mean
    a stuck sensor. ``statistics``: those that may raise an alarm (all by default; fewer for
    ablations); ``sensor_weight`` and ``latent_weight`` weigh the two kinds of evidence in the
    combined score. ``clear_steps``: steps below every threshold before an anomaly is declared
    over.
    """

    warmup_steps: int = 10
    calibration_steps: int = 300
    false_alarm_rate: float = 1e-3
    margin: float = 1.5
    cusum_k_quantile: float = 0.95
    ewma_lambda: float = 0.05
    latent_weight: float = 0.5
    sensor_weight: float = 1.0
    ewma_sigmas: float = 6.0
    steady_factor: float = 3.0
    stuck_min_steps: int = 6
    statistics: tuple[str, ...] = ("instant", "peak", "jump", "cusum", "ewma", "stuck")
    clear_steps: int = 30

    def __post_init__(self) -> None:
        for name in ("warmup_steps", "calibration_steps", "clear_steps", "stuck_min_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"DetectorConfig.{name}={value!r} must be an integer >= 1")
        if self.calibration_steps < 20:
            raise ValueError(f"DetectorConfig.calibration_steps={self.calibration_steps!r} must be >= 20")
        for name in ("false_alarm_rate", "ewma_lambda", "cusum_k_quantile"):
            value = getattr(self, name)
            if not 0 < value < 1:
                raise ValueError(f"DetectorConfig.{name}={value!r} must be in (0, 1)")
        if not self.margin >= 1:
            raise ValueError(f"DetectorConfig.margin={self.margin!r} must be >= 1")
        for name in ("latent_weight", "sensor_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"DetectorConfig.{name}={getattr(self, name)!r} must be >= 0")
        if not self.latent_weight + self.sensor_weight > 0:
            raise ValueError("DetectorConfig: latent_weight + sensor_weight must be > 0")
        for name in ("ewma_sigmas", "steady_factor"):
            if not getattr(self, name) > 1:
                raise ValueError(f"DetectorConfig.{name}={getattr(self, name)!r} must be > 1")
        known = ("instant", "peak", "jump", "cusum", "ewma", "stuck")
        object.__setattr__(self, "statistics", tuple(self.statistics))
        unknown = [s for s in self.statistics if s not in known]
        if unknown or not self.statistics:
            raise ValueError(
                f"DetectorConfig.statistics={self.statistics!r} must be a non-empty subset of {known}"
            )


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """What ``twin worker`` runs.

    ``models``: checkpoint paths or registry references (``name``, ``name:version``); empty:
    every model of the registry (latest version of each name). A stream is served by the first
    model whose trained schema matches it. ``assets``: serve only these (topic prefixes
    ``obs.<asset>.``; several workers shard a fleet this way); empty: every ``obs.`` stream.
    ``horizons_steps``: control steps ahead to publish (each <= the model's calibrated horizon).
    ``publish_hz``: predictions per asset per second of stream time (published and stored).
    ``max_future_s``: observations stamped further ahead of the wall clock are rejected
    (None: no check, for simulations running faster than real time). ``max_gap_s``: a longer
    silence in an asset's stream (a restart, a paused feed) refills its window before the next
    prediction. ``db_lock_timeout_s``: how long a SQLite write waits for a lock held elsewhere
    before the store counts the database as unavailable (and retries).
    """

    bus: BusConfig = field(default_factory=BusConfig)
    db_url: str | None = None
    models: tuple[str, ...] = ()
    assets: tuple[str, ...] = ()
    stream: str = "state"
    source: str = "worker"
    horizons_steps: tuple[int, ...] = (1, 5, 10, 30)
    publish_hz: float = 10.0
    snapshot_every_s: float = 1.0
    keyframe_every_s: float = 30.0
    max_future_s: float | None = 5.0
    max_gap_s: float = 0.2
    db_lock_timeout_s: float = 5.0
    max_batch: int = 10_000
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    writer: WriterConfig = field(default_factory=lambda: WriterConfig(overflow="shed"))

    def __post_init__(self) -> None:
        if isinstance(self.models, str) or isinstance(self.assets, str):
            raise TypeError("WorkerConfig.models and .assets must be sequences of strings, not a string")
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "assets", tuple(self.assets))
        horizons = tuple(int(h) for h in self.horizons_steps)
        if not horizons or any(h < 1 for h in horizons) or list(horizons) != sorted(set(horizons)):
            raise ValueError(
                f"WorkerConfig.horizons_steps={self.horizons_steps!r} must be increasing integers >= 1"
            )
        object.__setattr__(self, "horizons_steps", horizons)
        for name in ("publish_hz", "snapshot_every_s", "keyframe_every_s", "max_gap_s", "db_lock_timeout_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"WorkerConfig.{name}={value!r} must be a positive number")
        if self.max_future_s is not None and not self.max_future_s > 0:
            raise ValueError(f"WorkerConfig.max_future_s={self.max_future_s!r} must be > 0 or None")
        if not isinstance(self.max_batch, int) or self.max_batch < 1:
            raise ValueError(f"WorkerConfig.max_batch={self.max_batch!r} must be a positive integer")

    @property
    def topics(self) -> tuple[str, ...]:
        """Subscription prefixes: observations, actions and events of the served assets."""
        if not self.assets:
            return ("obs.", "act.", "event.")
        return tuple(f"{kind}.{asset}." for asset in self.assets for kind in ("obs", "act", "event"))
