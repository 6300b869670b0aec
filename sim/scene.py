"""The Scene contract: what every simulated asset offers, with shapes and units.

A scene is one asset (``cartpole-0``) living in a :class:`sim.world.World`. Time advances in
physics ticks of ``1 / rate_hz`` seconds (240 Hz by default). Vectors are numpy float64 in SI
units, in the order of the schema's sensors (observations) or actuators (actions).
Orientations are unit quaternions (x, y, z, w) with the canonical sign w >= 0
(:func:`canonical_quaternion`): q and -q are the same rotation, and PyBullet returns either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from bridge import StreamSchema
from sim.camera import CameraConfig
from sim.faults import Fault
from sim.sensors import SensorModel

CONTROLLERS = ("default", "random", "none")


class ActionError(ValueError):
    """An action of the wrong shape, type or outside the actuator bounds (names the actuator)."""


@dataclass(frozen=True, slots=True)
class SceneConfig:
    """Settings of one scene instance.

    ``asset``: bus name ("" means ``<kind>-0``); ``seed``: initial state, noise and controller
    randomness; ``sensors``: per-sensor models by sensor name (others are ideal);
    ``controller``: "default" (the scene's scripted controller with random excitation),
    "random" (random excitation with a weak centring term) or "none" (hold zero);
    ``excitation``: excitation amplitude as a fraction of each actuator's range;
    ``urdf``: path of the model (the ``urdf`` scene only); ``options``: scene-specific settings.
    """

    asset: str = ""
    seed: int = 0
    rate_hz: float = 240.0
    sensors: dict[str, SensorModel] = field(default_factory=dict)
    camera: CameraConfig = field(default_factory=CameraConfig)
    controller: str = "default"
    excitation: float = 0.3
    urdf: str | None = None
    gui: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"SceneConfig.seed={self.seed!r} must be an integer >= 0")
        if not (isinstance(self.rate_hz, (int, float)) and math.isfinite(self.rate_hz) and self.rate_hz > 0):
            raise ValueError(f"SceneConfig.rate_hz={self.rate_hz!r} must be a positive number of Hz")
        if self.controller not in CONTROLLERS:
            raise ValueError(f"SceneConfig.controller={self.controller!r} must be one of {CONTROLLERS}")
        if not 0.0 <= self.excitation <= 1.0:
            raise ValueError(f"SceneConfig.excitation={self.excitation!r} must be in [0, 1]")
        for name, model in self.sensors.items():
            if not isinstance(model, SensorModel):
                raise TypeError(f"SceneConfig.sensors[{name!r}] must be a SensorModel, got {model!r}")


@dataclass(frozen=True, slots=True)
class SimEvent:
    """Something a scene reports (a fault began or ended): becomes a ``bridge.Event``."""

    time_s: float
    category: str
    name: str
    message: str = ""
    severity: str = "info"
    params: dict[str, str | int | float | bool] = field(default_factory=dict)


@runtime_checkable
class Scene(Protocol):
    """One simulated asset. Implementations: :mod:`sim.scenes` (see :mod:`sim.registry`)."""

    kind: str
    asset: str

    @property
    def time_s(self) -> float:
        """Simulated seconds since reset."""

    def schema(self) -> StreamSchema:
        """The ``state`` stream: kind "vector", dtype "<f8", shape (n_sensors,), SI units and
        plausible ranges, plus the actuators (SI units, hard bounds) actions must respect."""

    def camera_schemas(self) -> list[StreamSchema]:
        """The ``camera`` stream ((H, W, 3) uint8) and, when enabled, ``depth`` ((H, W, 1) f4 m)."""

    def reset(self, seed: int | None = None) -> None:
        """Back to a (seeded, randomised) initial state; time 0; faults cleared."""

    def step(self, action: np.ndarray) -> None:
        """Hold ``action`` (n_actuators,) SI for one physics tick and advance 1 / rate_hz s.
        Raises :class:`ActionError` on a wrong shape, NaN or a value outside the bounds."""

    def observe(self) -> np.ndarray:
        """Measured sensor values (n_sensors,) float64: noise, bias, rate, latency, faults applied
        (NaN where a sensor drops out)."""

    def true_state(self) -> np.ndarray:
        """Noise-free sensor values (n_sensors,) float64: the ground truth."""

    def camera(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(RGB (H, W, 3) uint8, depth (H, W, 1) float32 metres or None)."""

    def control(self) -> np.ndarray:
        """The configured controller's next action (n_actuators,) for the current state."""

    def apply_fault(self, fault: Fault) -> None:
        """Schedule ``fault`` (it acts from ``fault.at_s``); raises FaultError on bad targets."""

    def pop_events(self) -> list[SimEvent]:
        """Events (faults begun/ended) since the last call."""

    def save_state(self) -> Any:
        """Snapshot everything (physics, RNGs, sensors, faults, controller); see sim.fork."""

    def restore_state(self, state: Any) -> None:
        """Return exactly to a snapshot taken by :meth:`save_state` of this scene."""


def canonical_quaternion(q: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """``q`` (x, y, z, w) or ``-q``, whichever has ``w >= 0``: one sign per rotation, so a
    sensor stream only jumps where the rotation angle passes 180 degrees (w = 0), never because
    PyBullet flipped the sign of an unchanged orientation."""
    x, y, z, w = q
    return (-x, -y, -z, -w) if w < 0.0 else (x, y, z, w)


def validate_action(schema: StreamSchema, values: object) -> np.ndarray:
    """``values`` as float64 (n_actuators,) or :class:`ActionError` naming what is wrong."""
    actuators = schema.actuators
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ActionError(f"{schema.asset}: action is not numeric: {exc}") from None
    if array.shape != (len(actuators),):
        raise ActionError(
            f"{schema.asset}: action has shape {array.shape}, expected ({len(actuators)},) for "
            f"actuators {[a.name for a in actuators]}"
        )
    for value, spec in zip(array, actuators, strict=True):
        if not spec.low <= value <= spec.high:
            raise ActionError(
                f"{schema.asset}: actuator {spec.name!r}={value!r} {spec.unit} is outside "
                f"[{spec.low}, {spec.high}]"
            )
    return array
