"""The fault library: frozen, validated descriptions of what can go wrong, and when.

Every fault starts at sim time ``at_s``. Faults with a magnitude ramp linearly from no effect to
full effect over ``ramp_s`` seconds (0: a step). ``duration_s`` (None: for ever) ends the fault,
returning the asset to how it was when the fault began. Each fault that starts is published as
``bridge.Event(category="fault", name=<fault kind>, params=...)`` with its sim time, so the
ground truth for detection is on record. A scene checks the names a fault refers to (link,
joint, actuator, sensor) when the fault is scheduled, and raises :class:`FaultError` naming the
missing thing and what exists.

Units: masses kg; Coulomb friction N (prismatic joints) or N*m (revolute); damping N*s/m or
N*m*s/rad; sensor bias and noise in the sensor's own unit; drift in unit per second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar


class FaultError(ValueError):
    """A fault that cannot be applied to this scene (names the missing thing)."""


def _finite(cls: str, name: str, value: object, *, low: float = -math.inf, high: float = math.inf) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise ValueError(f"{cls}.{name}={value!r} must be a finite number in [{low}, {high}]")


@dataclass(frozen=True, slots=True)
class Fault:
    """Common timing of every fault (seconds of simulated time)."""

    KIND: ClassVar[str] = "fault"
    TARGET: ClassVar[str] = ""  # "link", "joint", "actuator", "sensor" or "" (whole scene)
    at_s: float = 0.0
    ramp_s: float = 0.0
    duration_s: float | None = None

    def __post_init__(self) -> None:
        cls = type(self).__name__
        _finite(cls, "at_s", self.at_s, low=0.0)
        _finite(cls, "ramp_s", self.ramp_s, low=0.0)
        if self.duration_s is not None:
            _finite(cls, "duration_s", self.duration_s, low=0.0)
        target = getattr(self, self.TARGET, None) if self.TARGET else None
        if self.TARGET and (not isinstance(target, str) or not target):
            raise ValueError(f"{cls}.{self.TARGET}={target!r} must name a {self.TARGET}")

    @property
    def target(self) -> str:
        return getattr(self, self.TARGET) if self.TARGET else ""

    def params(self) -> dict[str, str | int | float | bool]:
        """Flat parameters for the fault's bus Event."""
        out: dict[str, str | int | float | bool] = {"kind": self.KIND}
        for f in fields(self):
            value: Any = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, tuple):
                for i, v in enumerate(value):
                    out[f"{f.name}_{i}"] = float(v)
            else:
                out[f.name] = value
        return out


@dataclass(frozen=True, slots=True)
class MassChange(Fault):
    """Scale a link's mass by ``factor``, and its inertia with it (uniform density)."""

    KIND: ClassVar[str] = "mass_change"
    TARGET: ClassVar[str] = "link"
    link: str = ""
    factor: float = 1.0

    def __post_init__(self) -> None:
        Fault.__post_init__(self)
        _finite("MassChange", "factor", self.factor, low=1e-3, high=1e3)


@dataclass(frozen=True, slots=True)
class Payload(Fault):
    """Attach a point mass (kg) rigidly at ``offset_m`` from a link's centre of mass (link frame)."""

    KIND: ClassVar[str] = "payload"
    TARGET: ClassVar[str] = "link"
    link: str = ""
    mass_kg: float = 0.1
    offset_m: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        Fault.__post_init__(self)
        _finite("Payload", "mass_kg", self.mass_kg, low=1e-6, high=1e4)
        if len(self.offset_m) != 3:
            raise ValueError(f"Payload.offset_m={self.offset_m!r} must be 3 numbers (m)")
        for v in self.offset_m:
            _finite("Payload", "offset_m", v, low=-100, high=100)


@dataclass(frozen=True, slots=True)
class FrictionChange(Fault):
    """Set a joint's Coulomb friction (N or N*m), e.g. a bearing wearing out."""

    KIND: ClassVar[str] = "friction_change"
    TARGET: ClassVar[str] = "joint"
    joint: str = ""
    coulomb: float = 0.0

    def __post_init__(self) -> None:
        Fault.__post_init__(self)
        _finite("FrictionChange", "coulomb", self.coulomb, low=0.0, high=1e6)


@dataclass(frozen=True, slots=True)
class DampingChange(Fault):
    """Set a joint's viscous damping (N*s/m or N*m*s/rad)."""

    KIND: ClassVar[str] = "damping_change"
    TARGET: ClassVar[str] = "joint"
    joint: str = ""
    damping: float = 0.0

    def __post_init__(self) -> None:
        Fault.__post_init__(self)
        _finite("DampingChange", "damping", self.damping, low=0.0, high=1e6)


@dataclass(frozen=True, slots=True)
class ActuatorWeakness(Fault):
    """The actuator delivers only ``gain`` (0..1) of what it is commanded."""

    KIND: ClassVar[str] = "actuator_weakness"
    TARGET: ClassVar[str] = "actuator"
    actuator: str = ""
    gain: float = 0.5

    def __post_init__(self) -> None:
        Fault.__post_init__(self)
        _finite("ActuatorWeakness", "gain", self.gain, low=0.0, high=1.0)


@dataclass(frozen=True, slots=True)
class ActuatorDeadZone(Fault):
    """Commands with magnitude below ``width`` (actuator unit) produce nothing."""

    KIND: ClassVar[str] = "actuator_dead_zone"
    TARGET: ClassVar[str] = "actuator"
    actuator: str = ""
    width: float = 0.0

    def __post_init__(self) -> None:
        Fault.__post_init__(self)
        _finite("ActuatorDeadZone", "width", self.width, low=0.0)


@dataclass(frozen=True, slots=True)
class JointLock(Fault):
    """The joint seizes where it is (a very large friction holds it)."""

    KIND: ClassVar[str] = "joint_lock"
    TARGET: ClassVar[str] = "joint"
    joint: str = ""


@dataclass(frozen=True, slots=True)
class Collision(Fault):
    """A sphere (kg) is thrown at a link at ``speed_m_s`` along ``direction`` (world frame)."""

    KIND: ClassVar[str] = "collision"
    TARGET: ClassVar[str] = "link"
    link: str = ""
    mass_kg: float = 1.0
    speed_m_s: float = 5.0
    direction: tuple[float, float, float] = (0.0, 1.0, 0.0)

    def __post_init__(self) -> None:
        Fault.__post_init__(self)
        _finite("Collision", "mass_kg", self.mass_kg, low=1e-3, high=1e4)
        _finite("Collision", "speed_m_s", self.speed_m_s, low=0.0, high=1e3)
        if len(self.direction) != 3 or math.hypot(*self.direction) == 0:
            raise ValueError(f"Collision.direction={self.direction!r} must be a non-zero 3-vector")


@dataclass(frozen=True, slots=True)
class SensorBias(Fault):
    """Add ``bias`` (sensor unit) to a sensor (ramped: a slow offset)."""

    KIND: ClassVar[str] = "sensor_bias"
    TARGET: ClassVar[str] = "sensor"
    sensor: str = ""
    bias: float = 0.0

    def __post_init__(self) -> None:
        Fault.__post_init__(self)
        _finite("SensorBias", "bias", self.bias)


@dataclass(frozen=True, slots=True)
class SensorDrift(Fault):
    """The sensor's offset grows by ``rate_per_s`` (sensor unit per second) from ``at_s``."""

    KIND: ClassVar[str] = "sensor_drift"
    TARGET: ClassVar[str] = "sensor"
    sensor: str = ""
    rate_per_s: float = 0.0

    def __post_init__(self) -> None:
        Fault.__post_init__(self)
        _finite("SensorDrift", "rate_per_s", self.rate_per_s)


@dataclass(frozen=True, slots=True)
class SensorStuck(Fault):
    """The sensor repeats ``value`` (None: its last reading) whatever happens."""

    KIND: ClassVar[str] = "sensor_stuck"
    TARGET: ClassVar[str] = "sensor"
    sensor: str = ""
    value: float | None = None

    def __post_init__(self) -> None:
        Fault.__post_init__(self)
        if self.value is not None:
            _finite("SensorStuck", "value", self.value)


@dataclass(frozen=True, slots=True)
class SensorDropout(Fault):
    """The sensor reads NaN (no data) while the fault lasts."""

    KIND: ClassVar[str] = "sensor_dropout"
    TARGET: ClassVar[str] = "sensor"
    sensor: str = ""


@dataclass(frozen=True, slots=True)
class NoiseBurst(Fault):
    """Extra Gaussian noise of ``std`` (sensor unit) while the fault lasts."""

    KIND: ClassVar[str] = "noise_burst"
    TARGET: ClassVar[str] = "sensor"
    sensor: str = ""
    std: float = 0.0

    def __post_init__(self) -> None:
        Fault.__post_init__(self)
        _finite("NoiseBurst", "std", self.std, low=0.0)


@dataclass(frozen=True, slots=True)
class CameraOcclusion(Fault):
    """Something covers ``fraction`` (0..1) of the camera image (from the left), pixels black."""

    KIND: ClassVar[str] = "camera_occlusion"
    fraction: float = 0.5

    def __post_init__(self) -> None:
        Fault.__post_init__(self)
        _finite("CameraOcclusion", "fraction", self.fraction, low=0.0, high=1.0)


FAULT_TYPES: dict[str, type[Fault]] = {
    cls.KIND: cls
    for cls in (
        MassChange,
        Payload,
        FrictionChange,
        DampingChange,
        ActuatorWeakness,
        ActuatorDeadZone,
        JointLock,
        Collision,
        SensorBias,
        SensorDrift,
        SensorStuck,
        SensorDropout,
        NoiseBurst,
        CameraOcclusion,
    )
}


def fault_from_dict(spec: dict[str, Any]) -> Fault:
    """Build a fault from ``{"kind": "mass_change", "link": "pole", "factor": 2, "at_s": 5}``."""
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind not in FAULT_TYPES:
        raise FaultError(f"unknown fault kind {kind!r}; known: {sorted(FAULT_TYPES)}")
    cls = FAULT_TYPES[kind]
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise FaultError(f"fault {kind!r} has no parameter(s) {unknown}; it takes {sorted(known)}")
    for key in ("offset_m", "direction"):
        if key in spec:
            spec[key] = tuple(spec[key])
    return cls(**spec)
