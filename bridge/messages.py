"""Typed messages of the Jumeau bus: what travels, validated on construction.

Every message is a frozen dataclass. Construction checks names, types and shapes and raises
``ValueError``/``TypeError`` naming the field and the bad value, so a message that exists is
well formed. How a message becomes ZeroMQ frames lives in :mod:`bridge.protocol`; the frame
layout is documented field by field in ``docs/protocol.md``.

Conventions: timestamps are integer nanoseconds since the Unix epoch (``t_ns``); sensor and
actuator units are SI symbols (``"m"``, ``"rad/s"``, ``"N"``, ``"K"``, ``"1"`` for
dimensionless); arrays are numpy arrays of a fixed-size numeric dtype; ``source`` is the id of
the publishing process and ``seq`` its per-topic sequence number (both filled by the
:class:`bridge.Publisher` when left at their defaults).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar, Literal

import msgpack
import numpy as np

PROTOCOL_VERSION = 1
"""Version carried in every envelope; a receiver rejects any other."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,63}")
EVENT_CATEGORIES = ("anomaly", "fault", "marker", "note", "error")
SEVERITIES = ("info", "warning", "critical")
StreamKind = Literal["vector", "image"]


@lru_cache(maxsize=4096)
def _valid_name(value: object) -> bool:
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def check_name(what: str, value: object) -> str:
    """Return ``value`` if it is a valid asset/stream/source name, else raise ``ValueError``.

    Names are 1-64 characters of letters, digits, ``_`` and ``-`` (no dots: dots separate
    topic levels), starting with a letter or digit.
    """
    if not _valid_name(value):
        raise ValueError(
            f"{what}={value!r} is not a valid name: use 1-64 letters, digits, '_' or '-', "
            "starting with a letter or digit (no dots)"
        )
    return value  # type: ignore[return-value]


def check_t_ns(what: str, value: object) -> int:
    """Return ``value`` if it is a non-negative integer timestamp in ns, else raise."""
    if type(value) is not int and not isinstance(value, np.integer):
        raise TypeError(f"{what} must be an integer number of nanoseconds, got {value!r}")
    if value < 0:
        raise ValueError(f"{what} must be >= 0 ns, got {value}")
    return int(value)


def _check_array(what: str, value: object, ndim: int | None = None) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{what} must be a numpy array, got {type(value).__name__}")
    if value.dtype.kind not in "biuf":
        raise TypeError(f"{what} has dtype {value.dtype}; only bool/int/uint/float travel")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{what} must have {ndim} dimension(s), got shape {value.shape}")
    return value


def _check_seq(seq: object) -> None:
    if type(seq) is not int or seq < -1:
        raise ValueError(f"seq must be an integer >= -1 (-1: not yet assigned), got {seq!r}")


def _check_source(source: object) -> None:
    if source != "":
        check_name("source", source)


def _finite_or_inf(what: str, value: object) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        raise ValueError(f"{what} must be a number (inf allowed, NaN not), got {value!r}")
    return float(value)


def _check_channel(spec: SensorSpec | ActuatorSpec, what: str) -> None:
    """Validate a sensor's or actuator's name, unit and range; store the bounds as floats."""
    if not isinstance(spec.name, str) or not spec.name:
        raise ValueError(f"{what} name must be a non-empty string, got {spec.name!r}")
    if not isinstance(spec.unit, str) or not spec.unit:
        raise ValueError(f"{what} {spec.name!r}: unit must be an SI symbol, got {spec.unit!r}")
    low = _finite_or_inf(f"{what} {spec.name!r} low", spec.low)
    high = _finite_or_inf(f"{what} {spec.name!r} high", spec.high)
    if low > high:
        raise ValueError(f"{what} {spec.name!r}: low={low} > high={high}")
    object.__setattr__(spec, "low", low)
    object.__setattr__(spec, "high", high)


@dataclass(frozen=True, slots=True)
class SensorSpec:
    """One scalar channel of a vector stream: its name, SI unit and plausible range."""

    name: str
    unit: str
    low: float = -math.inf
    high: float = math.inf
    allow_nan: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        _check_channel(self, "sensor")


@dataclass(frozen=True, slots=True)
class ActuatorSpec:
    """One actuator input: its name, SI unit and hard bounds (actions outside are rejected)."""

    name: str
    unit: str
    low: float
    high: float
    description: str = ""

    def __post_init__(self) -> None:
        _check_channel(self, "actuator")


@dataclass(frozen=True, slots=True)
class StreamSchema:
    """What one stream carries: announced on ``schema.<asset>.<stream>`` and cached by the bus.

    A ``vector`` stream carries ``shape == (len(sensors),)`` values, one per sensor, in the
    sensors' order. An ``image`` stream carries ``(height, width, channels)`` pixels (``|u1`` for
    RGB, ``<f4`` metres for depth); ``sensors`` then holds one spec per channel.
    ``actuators`` lists the asset's action inputs (the order of :class:`Action` values).
    """

    KIND: ClassVar[str] = "schema"
    asset: str
    stream: str
    kind: StreamKind
    dtype: str
    shape: tuple[int, ...]
    rate_hz: float
    sensors: tuple[SensorSpec, ...] = ()
    actuators: tuple[ActuatorSpec, ...] = ()
    description: str = ""
    t_ns: int = 0
    source: str = ""
    seq: int = -1
    _id: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_name("asset", self.asset)
        check_name("stream", self.stream)
        if self.kind not in ("vector", "image"):
            raise ValueError(f"schema kind must be 'vector' or 'image', got {self.kind!r}")
        try:
            dtype = np.dtype(self.dtype)
        except TypeError as exc:
            raise ValueError(f"schema dtype {self.dtype!r} is not a numpy dtype") from exc
        if dtype.kind not in "biuf":
            raise ValueError(f"schema dtype {self.dtype!r}: only bool/int/uint/float travel")
        object.__setattr__(self, "dtype", dtype.newbyteorder("<").str)
        shape = tuple(int(n) for n in self.shape)
        if any(n <= 0 for n in shape):
            raise ValueError(f"schema shape {shape} must have positive dimensions")
        object.__setattr__(self, "shape", shape)
        sensors = tuple(self.sensors)
        if not all(isinstance(s, SensorSpec) for s in sensors):
            raise TypeError("schema sensors must be SensorSpec instances")
        object.__setattr__(self, "sensors", sensors)
        actuators = tuple(self.actuators)
        if not all(isinstance(a, ActuatorSpec) for a in actuators):
            raise TypeError("schema actuators must be ActuatorSpec instances")
        object.__setattr__(self, "actuators", actuators)
        names = [s.name for s in sensors]
        if len(set(names)) != len(names):
            raise ValueError(f"schema {self.asset}.{self.stream}: duplicate sensor names {names}")
        if self.kind == "vector" and shape != (len(sensors),):
            raise ValueError(
                f"vector schema {self.asset}.{self.stream}: shape {shape} must be "
                f"({len(sensors)},), one value per sensor"
            )
        if self.kind == "image" and (len(shape) != 3 or len(sensors) != shape[2]):
            raise ValueError(
                f"image schema {self.asset}.{self.stream}: shape must be (H, W, C) with one "
                f"sensor spec per channel, got shape {shape} and {len(sensors)} sensors"
            )
        rate = _finite_or_inf("rate_hz", self.rate_hz)
        if not 0 < rate < math.inf:
            raise ValueError(f"rate_hz must be positive and finite, got {self.rate_hz!r}")
        object.__setattr__(self, "rate_hz", rate)
        check_t_ns("t_ns", self.t_ns)
        _check_source(self.source)
        _check_seq(self.seq)
        object.__setattr__(self, "_id", _schema_id(self))

    @property
    def topic(self) -> str:
        return f"schema.{self.asset}.{self.stream}"

    @property
    def data_topic(self) -> str:
        """The topic the stream's observations travel on."""
        return f"obs.{self.asset}.{self.stream}"

    @property
    def schema_id(self) -> str:
        """Content hash (12 hex chars) of what the data means; observations cite it."""
        return self._id

    @property
    def sensor_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sensors)

    @property
    def units(self) -> tuple[str, ...]:
        return tuple(s.unit for s in self.sensors)


def _schema_id(schema: StreamSchema) -> str:
    content = [
        schema.asset,
        schema.stream,
        schema.kind,
        schema.dtype,
        list(schema.shape),
        [[s.name, s.unit, s.low, s.high, s.allow_nan] for s in schema.sensors],
        [[a.name, a.unit, a.low, a.high] for a in schema.actuators],
    ]
    return hashlib.sha1(msgpack.packb(content)).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class Observation:
    """One sample of a stream: ``values`` shaped and typed as its schema says."""

    KIND: ClassVar[str] = "obs"
    asset: str
    stream: str
    t_ns: int
    values: np.ndarray
    schema_id: str = ""
    source: str = ""
    seq: int = -1

    def __post_init__(self) -> None:
        check_name("asset", self.asset)
        check_name("stream", self.stream)
        check_t_ns("t_ns", self.t_ns)
        _check_array("values", self.values)
        if not isinstance(self.schema_id, str):
            raise TypeError(f"schema_id must be a string, got {self.schema_id!r}")
        _check_source(self.source)
        _check_seq(self.seq)

    @property
    def topic(self) -> str:
        return f"obs.{self.asset}.{self.stream}"


_new = object.__new__
_set = object.__setattr__


def trusted_observation(
    asset: str, stream: str, t_ns: int, values: np.ndarray, schema_id: str, source: str, seq: int
) -> Observation:
    """An :class:`Observation` built without re-running its checks: only for the decoder's hot
    path, on fields whose names were validated before for the same stream and source, a
    non-negative integer ``t_ns`` and ``seq`` and a numeric ``values`` it built itself
    (measured: half the cost of the checked constructor, which dominated decoding)."""
    message = _new(Observation)
    _set(message, "asset", asset)
    _set(message, "stream", stream)
    _set(message, "t_ns", t_ns)
    _set(message, "values", values)
    _set(message, "schema_id", schema_id)
    _set(message, "source", source)
    _set(message, "seq", seq)
    return message


@dataclass(frozen=True, slots=True)
class Action:
    """A command to an asset's actuators, in the order of its schema's ``actuators``."""

    KIND: ClassVar[str] = "act"
    asset: str
    t_ns: int
    values: np.ndarray
    stream: str = "cmd"
    source: str = ""
    seq: int = -1

    def __post_init__(self) -> None:
        check_name("asset", self.asset)
        check_name("stream", self.stream)
        check_t_ns("t_ns", self.t_ns)
        _check_array("values", self.values, ndim=1)
        _check_source(self.source)
        _check_seq(self.seq)

    @property
    def topic(self) -> str:
        return f"act.{self.asset}.{self.stream}"


@dataclass(frozen=True, slots=True)
class Prediction:
    """Predicted futures of a stream at several horizons, with an uncertainty band.

    ``horizons_s`` (H,) seconds after ``origin_t_ns`` (the time of the latest observation the
    prediction used); ``mean``, ``lower`` and ``upper`` (H, n) in the stream's sensor units;
    the band ``[lower, upper]`` is meant to hold a fraction ``level`` of observed futures.
    """

    KIND: ClassVar[str] = "pred"
    asset: str
    stream: str
    t_ns: int
    origin_t_ns: int
    horizons_s: np.ndarray
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    level: float = 0.9
    model: str = ""
    source: str = ""
    seq: int = -1

    def __post_init__(self) -> None:
        check_name("asset", self.asset)
        check_name("stream", self.stream)
        check_t_ns("t_ns", self.t_ns)
        check_t_ns("origin_t_ns", self.origin_t_ns)
        horizons = _check_array("horizons_s", self.horizons_s, ndim=1)
        mean = _check_array("mean", self.mean, ndim=2)
        if mean.shape[0] != horizons.shape[0]:
            raise ValueError(f"mean {mean.shape} needs one row per horizon ({horizons.shape[0]})")
        for name in ("lower", "upper"):
            band = _check_array(name, getattr(self, name), ndim=2)
            if band.shape != mean.shape:
                raise ValueError(f"{name} shape {band.shape} differs from mean {mean.shape}")
        if not isinstance(self.level, float) or not 0.0 < self.level < 1.0:
            raise ValueError(f"level must be a float in (0, 1), got {self.level!r}")
        if not isinstance(self.model, str):
            raise TypeError(f"model must be a string, got {self.model!r}")
        _check_source(self.source)
        _check_seq(self.seq)

    @property
    def topic(self) -> str:
        return f"pred.{self.asset}.{self.stream}"


ParamValue = str | int | float | bool


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened to an asset: an anomaly, an injected fault, a marker, a note."""

    KIND: ClassVar[str] = "event"
    asset: str
    t_ns: int
    category: str
    name: str
    severity: str = "info"
    message: str = ""
    params: dict[str, ParamValue] = field(default_factory=dict)
    source: str = ""
    seq: int = -1

    def __post_init__(self) -> None:
        check_name("asset", self.asset)
        check_t_ns("t_ns", self.t_ns)
        if self.category not in EVENT_CATEGORIES:
            raise ValueError(f"event category {self.category!r} not in {EVENT_CATEGORIES}")
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"event name must be a non-empty string, got {self.name!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"event severity {self.severity!r} not in {SEVERITIES}")
        if not isinstance(self.message, str):
            raise TypeError(f"event message must be a string, got {self.message!r}")
        if not isinstance(self.params, dict):
            raise TypeError(f"event params must be a dict, got {type(self.params).__name__}")
        for key, value in self.params.items():
            if not isinstance(key, str) or not isinstance(value, (str, int, float, bool)):
                raise TypeError(f"event param {key!r}={value!r}: keys str, values str/num/bool")
        _check_source(self.source)
        _check_seq(self.seq)

    @property
    def topic(self) -> str:
        return f"event.{self.asset}.{self.category}"


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A publisher is alive; ``last_seq`` maps each of its topics to the last seq it sent.

    Subscribers compare ``last_seq`` with what they received, so frames dropped at the very
    end of a burst are counted too, not only gaps between two received frames.
    """

    KIND: ClassVar[str] = "hb"
    t_ns: int
    role: str = ""
    status: str = "ok"
    last_seq: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    source: str = ""
    seq: int = -1

    def __post_init__(self) -> None:
        check_t_ns("t_ns", self.t_ns)
        if not isinstance(self.role, str) or not isinstance(self.status, str):
            raise TypeError("heartbeat role and status must be strings")
        if not isinstance(self.last_seq, dict) or not all(
            isinstance(k, str) and type(v) is int for k, v in self.last_seq.items()
        ):
            raise TypeError("heartbeat last_seq must map topic strings to integers")
        if type(self.dropped) is not int or self.dropped < 0:
            raise ValueError(f"heartbeat dropped must be an integer >= 0, got {self.dropped!r}")
        _check_source(self.source)
        _check_seq(self.seq)

    @property
    def topic(self) -> str:
        return f"hb.{self.source or 'unknown'}"


@dataclass(frozen=True, slots=True)
class StreamStats:
    """Counters for one (source, topic) as one subscriber saw them."""

    topic: str
    source: str
    received: int
    gaps: int
    rate_hz: float
    rejected: int = 0
    out_of_range: int = 0
    last_t_ns: int = 0


@dataclass(frozen=True, slots=True)
class BusStats:
    """Per-stream rates, gaps and rejects as seen by a monitor, published on ``stats.<source>``."""

    KIND: ClassVar[str] = "stats"
    t_ns: int
    streams: tuple[StreamStats, ...] = ()
    rejects: dict[str, int] = field(default_factory=dict)
    source: str = ""
    seq: int = -1

    def __post_init__(self) -> None:
        check_t_ns("t_ns", self.t_ns)
        streams = tuple(self.streams)
        if not all(isinstance(s, StreamStats) for s in streams):
            raise TypeError("bus stats streams must be StreamStats instances")
        object.__setattr__(self, "streams", streams)
        if not isinstance(self.rejects, dict):
            raise TypeError("bus stats rejects must map reason to count")
        _check_source(self.source)
        _check_seq(self.seq)

    @property
    def topic(self) -> str:
        return f"stats.{self.source or 'unknown'}"


Message = StreamSchema | Observation | Action | Prediction | Event | Heartbeat | BusStats
MESSAGE_TYPES: tuple[type[Any], ...] = (
    StreamSchema,
    Observation,
    Action,
    Prediction,
    Event,
    Heartbeat,
    BusStats,
)
