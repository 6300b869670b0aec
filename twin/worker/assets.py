"""Per-asset state of the live worker: the observation window, latent, pending predictions,
the detector, and the anomaly in progress. Plain data; the loop updates it."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from twin.worker.detector import Detector
from twin.worker.inference import ModelAdapter


@dataclass(slots=True)
class Pending:
    """A stored prediction waiting for its target: one horizon of one forecast."""

    origin_t_ns: int
    horizon_s: float
    target_t_ns: int
    predicted: np.ndarray
    low: np.ndarray
    high: np.ndarray
    model: str = ""
    """The registry name (``name:version``) of the model that made the prediction."""


@dataclass(slots=True)
class Anomaly:
    """An anomaly in progress: since when, detected when, how many quiet steps so far."""

    since_t_ns: int
    detected_t_ns: int
    peak: float
    quiet: int = 0


@dataclass(slots=True)
class AssetState:
    """Everything the worker keeps about one asset's served stream."""

    asset: str
    stream: str
    model: ModelAdapter
    schema_id: str
    detector: Detector
    window: np.ndarray
    """(history, S) SI: the last ``history`` control-step observations (oldest first)."""
    filled: int = 0
    step: int = 0
    last_t_ns: int = -1
    """Stream time of the newest accepted observation."""
    last_step_t_ns: int = -1
    z: np.ndarray | None = None
    predicted_z: np.ndarray | None = None
    predicted_values: np.ndarray | None = None
    predicted_scale: np.ndarray | None = None
    """The one-step forecast made at the previous control step: latent (D,), values (S,) SI and
    the error the model expected of them (S,) in training stds."""
    action: np.ndarray | None = None
    """Action held (A,) SI: the last one seen on the bus, else inferred by inverse dynamics."""
    bus_action: np.ndarray | None = None
    pending: deque[Pending] = field(default_factory=deque)
    next_publish_t_ns: int = 0
    next_snapshot_t_ns: int = 0
    next_keyframe_t_ns: int = 0
    anomaly: Anomaly | None = None
    calm_since_t_ns: int = 0
    """When the surprise last sat at zero: the start of an anomaly that builds up slowly."""
    faults: list[tuple[int, str]] = field(default_factory=list)
    """Ground truth seen on the bus: (t_ns, fault name) of injected faults."""
    last_surprise: float = 0.0
    restored: bool = False
    at_limit: bool = False
    """A reading is at its range limit (the detector pauses; one event per contact)."""

    @property
    def ready(self) -> bool:
        return self.filled >= len(self.window)

    def push(self, values: np.ndarray, t_ns: int, period_ns: float | None = None) -> None:
        """Append a control-step observation to the window. ``period_ns``: the control period;
        a reading more than a period after the last one (a frame lost or refused in between)
        advances :attr:`step` by the periods that passed, so whatever judges consecutive steps
        (the detector's one-step evidence and sensor relations, the open loop) sees the gap."""
        passed = 1
        if period_ns is not None and self.last_step_t_ns >= 0:
            passed = max(1, round((t_ns - self.last_step_t_ns) / period_ns))
        self.window[:-1] = self.window[1:]
        self.window[-1] = values
        self.filled = min(self.filled + 1, len(self.window))
        self.step += passed
        self.last_step_t_ns = t_ns
