"""Configuration of the twin worker: one frozen, validated dataclass."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bridge import BusConfig
from twin.store.writer import WriterConfig

RESIDUAL_UNITS = ("predicted", "training_std")
"""What the detector's residuals are measured in (:attr:`DetectorConfig.residual_units`)."""


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """How surprise becomes an anomaly (see :mod:`twin.worker.detector`).

    ``calibration_steps`` nominal control steps per asset (after ``warmup_steps``) set the thresholds at
    the ``1 - false_alarm_rate`` quantile of nominal statistics times ``margin``. ``cusum_k``: CUSUM
    reference as a quantile of the nominal combined score; ``ewma_lambda``: EWMA weight of the signed per-
    sensor residuals (slow drift; a second EWMA runs at a quarter of it), its limit at least
    ``ewma_sigmas`` times its nominal spread. ``steady_factor``: calibration blocks whose median score
    exceeds this times the typical block's are left out (start-up transients). ``stuck_min_steps``: fewest
    identical readings in a row that can mean a stuck sensor. ``statistics``: those that may raise an
    alarm (every one but ``cusum`` by default: on the cart-pole's nominal reference CUSUM of the combined
    score added no detection the ``horizon`` and ``ewma`` statistics did not make and was the source of
    every false alarm left, see docs/worker.md; ``consistency``, the sensors' relations to one
    another, since 2026-12-05; fewer for ablations); ``sensor_weight`` and
    ``latent_weight`` weigh the two kinds of evidence in the combined score. ``clear_steps``: steps below
    every threshold before an anomaly is declared over. ``horizons``: control steps over which the worker
    re-predicts each reading open loop (from the latent that many steps back, through the actions applied
    since; empty: off); ``horizon_window``: steps the ``horizon`` statistic averages over.
    ``limit_margin``: a reading within this fraction of its sensor's range from either end of the schema's
    range is at a limit (a cart at its end stop): an envelope event, not evidence of a fault; the detector
    pauses there and for ``limit_holdoff_steps`` after (the impact's residuals). It pauses too, without a
    contact event, while a reading within ``limit_approach`` of its range's span from an end heads for that
    end fast enough to reach it within ``limit_lead_steps`` at its last step's rate (a cart running into
    its end stop: the model's forecast crosses an end it never learned; 0 steps: off).
    ``residual_units``: what a residual is measured in before calibration. ``"predicted"`` (the
    default): the model's own expected error for that step, the variance head's scale read from the
    latent the prediction came from (in training stds), so an error the model expects (a fast swing,
    a regime it saw little of) weighs less than the same error where it is precise (balancing);
    ``"training_std"``: the plain error in training stds, the same everywhere.
    """

    warmup_steps: int = 10
    calibration_steps: int = 900
    false_alarm_rate: float = 1e-3
    margin: float = 1.5
    cusum_k_quantile: float = 0.95
    ewma_lambda: float = 0.05
    latent_weight: float = 0.5
    sensor_weight: float = 1.0
    ewma_sigmas: float = 6.0
    steady_factor: float = 3.0
    stuck_min_steps: int = 6
    statistics: tuple[str, ...] = ("instant", "peak", "jump", "ewma", "stuck", "horizon", "consistency")
    clear_steps: int = 30
    horizons: tuple[int, ...] = (5, 10, 20, 30)
    horizon_window: int = 30
    limit_margin: float = 0.01
    limit_holdoff_steps: int = 60
    limit_lead_steps: int = 30
    limit_approach: float = 0.1
    residual_units: str = "predicted"

    @property
    def scaled(self) -> bool:
        """Residuals are divided by the model's predicted error scale (``residual_units``)."""
        return self.residual_units == "predicted"

    def __post_init__(self) -> None:
        if self.residual_units not in RESIDUAL_UNITS:
            raise ValueError(
                f"DetectorConfig.residual_units={self.residual_units!r} must be one of {RESIDUAL_UNITS}"
            )
        if not 0 <= self.limit_margin < 0.5:
            raise ValueError(f"DetectorConfig.limit_margin={self.limit_margin!r} must be in [0, 0.5)")
        if not isinstance(self.limit_lead_steps, int) or self.limit_lead_steps < 0:
            raise ValueError(
                f"DetectorConfig.limit_lead_steps={self.limit_lead_steps!r} must be an integer >= 0"
            )
        if not self.limit_margin <= self.limit_approach < 0.5:
            raise ValueError(
                f"DetectorConfig.limit_approach={self.limit_approach!r} must be in [limit_margin, 0.5)"
            )
        if not isinstance(self.limit_holdoff_steps, int) or self.limit_holdoff_steps < 0:
            raise ValueError(
                f"DetectorConfig.limit_holdoff_steps={self.limit_holdoff_steps!r} must be an integer >= 0"
            )
        for name in ("warmup_steps", "calibration_steps", "clear_steps", "stuck_min_steps", "horizon_window"):
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
        horizons = tuple(self.horizons)
        if any(not isinstance(k, int) or k < 1 for k in horizons) or list(horizons) != sorted(set(horizons)):
            raise ValueError(f"DetectorConfig.horizons={self.horizons!r} must be increasing integers >= 1")
        object.__setattr__(self, "horizons", horizons)
        known = ("instant", "peak", "jump", "cusum", "ewma", "stuck", "horizon", "consistency")
        object.__setattr__(self, "statistics", tuple(self.statistics))
        unknown = [s for s in self.statistics if s not in known]
        if unknown or not self.statistics:
            raise ValueError(
                f"DetectorConfig.statistics={self.statistics!r} must be a non-empty subset of {known}"
            )


@dataclass(frozen=True, slots=True)
class AdaptConfig:
    """Online adaptation (see :mod:`twin.worker.adapt`).

    Each asset keeps its last ``buffer_steps`` nominal control steps; a job starts at most every
    ``every_s`` (wall clock; the first ``every_s`` after start-up) for a model whose assets have
    ``min_steps`` eligible steps each. A job trains a copy for ``train_steps`` steps of ``batch``
    windows (``rollout_steps`` unrolled steps, learning rate ``lr``, seeded by ``seed``) on the
    oldest ``1 - holdout`` of each asset's steps, in a child process using at most
    ``cpu_fraction`` of one core (duty cycle; one torch thread; ``nice`` added to its niceness),
    killed after ``timeout_s``. The candidate replaces the model for an asset only if its
    held-out error is below ``1 - min_improvement`` times the base model's. Steps are left out
    while an anomaly lasts, from ``guard_s`` before its start to ``guard_s`` after its end, and
    whenever the surprise score reaches ``alarm_level`` (1 = an alarm threshold).
    """

    every_s: float = 60.0
    buffer_steps: int = 3600
    min_steps: int = 900
    holdout: float = 0.25
    train_steps: int = 200
    batch: int = 32
    lr: float = 3e-4
    rollout_steps: int = 10
    cpu_fraction: float = 0.25
    nice: int = 10
    guard_s: float = 2.0
    alarm_level: float = 1.0
    min_improvement: float = 0.02
    timeout_s: float = 600.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("buffer_steps", "min_steps", "train_steps", "batch", "rollout_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"AdaptConfig.{name}={value!r} must be an integer >= 1")
        if self.min_steps > self.buffer_steps:
            raise ValueError(
                f"AdaptConfig.min_steps={self.min_steps!r} must be <= buffer_steps={self.buffer_steps!r}"
            )
        for name in ("every_s", "lr", "timeout_s", "alarm_level"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"AdaptConfig.{name}={value!r} must be a positive number")
        if not (isinstance(self.guard_s, (int, float)) and math.isfinite(self.guard_s) and self.guard_s >= 0):
            raise ValueError(f"AdaptConfig.guard_s={self.guard_s!r} must be a number >= 0")
        if not 0 < self.cpu_fraction <= 1:
            raise ValueError(
                f"AdaptConfig.cpu_fraction={self.cpu_fraction!r} must be in (0, 1] (of one core)"
            )
        for name in ("holdout", "min_improvement"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"AdaptConfig.{name}={getattr(self, name)!r} must be in (0, 1)")
        if not isinstance(self.nice, int) or not 0 <= self.nice <= 19:
            raise ValueError(f"AdaptConfig.nice={self.nice!r} must be an integer in [0, 19]")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"AdaptConfig.seed={self.seed!r} must be an integer >= 0")


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """What ``twin worker`` runs.

    ``models``: checkpoint paths or registry references (``name``, ``name:version``); empty:
    every model of the registry (latest version of each name). A stream is served by the first
    model whose trained schema matches it. ``assets``: serve only these: an asset's name, or a
    name prefix ending in ``*`` (``line1-*``: every asset whose name starts with ``line1-``), each
    a topic prefix (``obs.<asset>.``, ``obs.line1-``), so several workers shard a fleet by name
    (:meth:`serves`); empty: every ``obs.`` stream.
    ``horizons_steps``: control steps ahead to publish (each <= the model's calibrated horizon).
    ``publish_hz``: predictions per asset per second of stream time (published and stored).
    ``max_future_s``: observations stamped further ahead of the wall clock are rejected
    (None: no check, for simulations running faster than real time). ``max_gap_s``: a longer
    silence in an asset's stream (a restart, a paused feed) refills its window before the next
    prediction. ``db_lock_timeout_s``: how long a SQLite write waits for a lock held elsewhere
    before the store counts the database as unavailable (and retries). ``adapt``: online
    adaptation (None: off).
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
    torch_threads: int = 1
    """Intra-op threads of the worker's forward passes. The live batches are small: with two,
    every op waits for a second thread that the simulator or the store may hold off the CPU
    (spikes of 50-80 ms seen on 2 cores); one keeps a step's cost steady."""
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    writer: WriterConfig = field(default_factory=lambda: WriterConfig(overflow="shed"))
    adapt: AdaptConfig | None = None

    def __post_init__(self) -> None:
        if isinstance(self.models, str) or isinstance(self.assets, str):
            raise TypeError("WorkerConfig.models and .assets must be sequences of strings, not a string")
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "assets", tuple(self.assets))
        for pattern in self.assets:
            name = pattern[:-1] if pattern.endswith("*") else pattern
            if not name or "*" in name or "." in name or any(c.isspace() for c in name):
                raise ValueError(
                    f"WorkerConfig.assets: {pattern!r} must be an asset name or a name prefix ending in "
                    "'*', without dots, spaces or another '*'"
                )
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
        if not isinstance(self.torch_threads, int) or not 1 <= self.torch_threads <= 256:
            raise ValueError(
                f"WorkerConfig.torch_threads={self.torch_threads!r} must be an integer in [1, 256]"
            )

    @property
    def topics(self) -> tuple[str, ...]:
        """Subscription prefixes: observations, actions and events of the served assets."""
        if not self.assets:
            return ("obs.", "act.", "event.")
        return tuple(
            f"{kind}.{pattern[:-1]}" if pattern.endswith("*") else f"{kind}.{pattern}."
            for pattern in self.assets
            for kind in ("obs", "act", "event")
        )

    def serves(self, asset: str) -> bool:
        """Whether ``asset`` is one of :attr:`assets` (by name or prefix; all when empty)."""
        return not self.assets or any(
            asset.startswith(p[:-1]) if p.endswith("*") else asset == p for p in self.assets
        )
