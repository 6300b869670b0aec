"""The dashboard's one live connection: a background bus subscriber with bounded ring buffers.

:class:`LiveFeed` owns one :class:`bridge.Subscriber` (``obs.``, ``pred.``, ``event.``, ``hb.``)
in one daemon thread, however many browser tabs and reruns read it: pages share it through
``st.cache_resource`` (:func:`ui.resources.live_feed`). Each vector stream keeps the last
``window_s`` seconds in a fixed-size numpy ring (at most ``max_samples`` rows), each camera
stream only its latest frame, each predicted stream at most ``max_predictions`` predictions
(decimated to ``prediction_hz``), and events a bounded deque: memory is bounded whatever the
uptime. Readers take copies under a lock; the thread never waits for a reader.

If the bus goes away the thread notices (no traffic and no answer to ``ping``), says so through
:meth:`LiveFeed.health`, and keeps trying: ZeroMQ reconnects by itself when the bus returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import zmq

from bridge import BusStats, BusUnavailable, ControlClient, Event, Heartbeat, Observation, Prediction
from bridge import Subscriber as BusSubscriber
from bridge.messages import StreamSchema
from ui.config import UiConfig

log = logging.getLogger(__name__)

TOPICS = ("obs.", "pred.", "event.", "hb.")
LIVE_S = 2.0
"""Data younger than this (seconds since it arrived) makes an asset *live*."""
STALE_S = 30.0
"""Data younger than this, or a publisher still heartbeating, makes it *stale*; older: *offline*."""
HEARTBEAT_S = 3.0
SURPRISE_STREAM = "surprise"
"""A vector stream of this name (first value: the score) is the twin's published surprise."""


class VectorRing:
    """The last ``capacity`` samples of one vector stream: times (ns) and values, fixed memory."""

    def __init__(self, capacity: int, width: int) -> None:
        self.t_ns = np.zeros(capacity, dtype=np.int64)
        self.values = np.full((capacity, width), np.nan, dtype=np.float64)
        self.count = 0
        self._next = 0

    @property
    def capacity(self) -> int:
        return len(self.t_ns)

    def append(self, t_ns: int, values: np.ndarray) -> None:
        i = self._next
        self.t_ns[i] = t_ns
        self.values[i] = values
        self._next = (i + 1) % self.capacity
        self.count = min(self.count + 1, self.capacity)

    def window(self, since_ns: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Copies ``(t_ns (N,), values (N, width))`` in time order, samples at or after ``since_ns``."""
        if self.count < self.capacity:
            t, v = self.t_ns[: self.count], self.values[: self.count]
        else:
            order = np.r_[self._next : self.capacity, 0 : self._next]
            t, v = self.t_ns[order], self.values[order]
        keep = t >= since_ns
        return t[keep].copy(), v[keep].copy()


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    """One prediction as kept by the feed (see :class:`bridge.Prediction`)."""

    origin_t_ns: int
    horizons_s: np.ndarray
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    level: float
    model: str


@dataclass(slots=True)
class _StreamState:
    schema: StreamSchema | None
    ring: VectorRing | None = None
    frame: np.ndarray | None = None
    frame_t_ns: int = 0
    arrived: float = 0.0
    source: str = ""


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What a page needs to label a stream: sensor names and units, kind and rate."""

    asset: str
    stream: str
    kind: str
    sensors: tuple[str, ...]
    units: tuple[str, ...]
    rate_hz: float


@dataclass(frozen=True, slots=True)
class AssetStatus:
    """One row of the fleet table."""

    asset: str
    status: str
    """``live``, ``stale`` or ``offline``."""
    data_age_s: float | None
    rate_hz: float
    gaps: int
    streams: tuple[str, ...]
    model: str
    surprise: float | None
    last_t_ns: int


@dataclass(frozen=True, slots=True)
class FeedHealth:
    """Whether the feed hears the bus, for the banner every page shows."""

    bus_reachable: bool
    last_message_age_s: float | None
    received: int
    error: str
    endpoint: str


@dataclass
class _Counts:
    received: int = 0
    last_message: float = 0.0
    bus_ok: bool = False
    error: str = ""
    stats: BusStats | None = None
    heartbeats: dict[str, float] = field(default_factory=dict)


def asset_status(data_age_s: float | None, heartbeat_age_s: float | None) -> str:
    """``live`` when data is fresh, ``stale`` when data is late but recent or its publisher still
    heartbeats, ``offline`` otherwise."""
    if data_age_s is not None and data_age_s <= LIVE_S:
        return "live"
    if (data_age_s is not None and data_age_s <= STALE_S) or (
        heartbeat_age_s is not None and heartbeat_age_s <= HEARTBEAT_S
    ):
        return "stale"
    return "offline"


class LiveFeed:
    """A background subscriber with bounded buffers; :meth:`start` it once, read it from anywhere."""

    def __init__(self, config: UiConfig, *, context: zmq.Context | None = None) -> None:
        self.config = config
        self._context = context or zmq.Context.instance()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._streams: dict[tuple[str, str], _StreamState] = {}
        self._predictions: dict[tuple[str, str], deque[PredictionRecord]] = {}
        self._latest_prediction: dict[tuple[str, str], PredictionRecord] = {}
        self._events: deque[Event] = deque(maxlen=config.max_events)
        self._counts = _Counts()

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> LiveFeed:
        self._thread = threading.Thread(target=self._run, name="twin-ui-feed", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._subscribe()
            except (zmq.ZMQError, OSError, BusUnavailable) as exc:
                with self._lock:
                    self._counts.error = f"{type(exc).__name__}: {exc}"
                    self._counts.bus_ok = False
                log.warning("live feed: %s; reconnecting in 1 s", exc)
                self._stop.wait(1.0)

    def _subscribe(self) -> None:
        bus = self.config.bus
        control = ControlClient(bus.control_endpoint, timeout_s=1.0, context=self._context)
        subscriber = BusSubscriber(bus, TOPICS, name="twin-ui", ready_timeout_s=2.0, context=self._context)
        try:
            subscriber.open()
            with self._lock:
                self._counts.bus_ok = subscriber.ready
                self._counts.error = ""
            next_tick = time.monotonic() + 1.0
            while not self._stop.is_set():
                first = subscriber.recv(timeout_s=0.2)
                batch = [] if first is None else [first, *subscriber.drain(5_000)]
                if batch:
                    self._ingest(batch, subscriber)
                now = time.monotonic()
                if now >= next_tick:
                    next_tick = now + 1.0
                    self._tick(subscriber, control, now)
        finally:
            subscriber.close()
            control.close()

    def _tick(self, subscriber: BusSubscriber, control: ControlClient, now: float) -> None:
        stats = subscriber.accounting.snapshot(source="twin-ui")
        silent = now - self._counts.last_message > 2.0
        reachable = True
        if silent:  # no traffic: is the bus there at all?
            try:
                control.request("ping")
            except BusUnavailable:
                reachable = False
        with self._lock:
            self._counts.stats = stats
            self._counts.bus_ok = reachable
            if reachable:
                self._counts.error = ""

    # --- ingest ------------------------------------------------------------------------------
    def _ingest(self, batch: list, subscriber: BusSubscriber) -> None:
        now = time.monotonic()
        schemas = subscriber.schemas
        with self._lock:
            self._counts.received += len(batch)
            self._counts.last_message = now
            self._counts.bus_ok = True
            for message in batch:
                kind = type(message)
                if kind is Observation:
                    self._observe(message, schemas.get((message.asset, message.stream)), now)
                elif kind is Prediction:
                    self._predict(message)
                elif kind is Event:
                    self._events.append(message)
                elif kind is Heartbeat:
                    self._counts.heartbeats[message.source] = now

    def _observe(self, obs: Observation, schema: StreamSchema | None, now: float) -> None:
        key = (obs.asset, obs.stream)
        state = self._streams.get(key)
        if state is None or (schema is not None and state.schema is not schema):
            state = self._fresh_state(obs, schema, state)
            self._streams[key] = state
        state.arrived = now
        state.source = obs.source
        values = obs.values
        if values.ndim == 1 and state.ring is not None and values.shape[0] == state.ring.values.shape[1]:
            state.ring.append(obs.t_ns, values)
        elif values.ndim >= 2:
            state.frame, state.frame_t_ns = values, obs.t_ns

    def _fresh_state(
        self, obs: Observation, schema: StreamSchema | None, old: _StreamState | None
    ) -> _StreamState:
        if obs.values.ndim != 1:
            return _StreamState(schema)
        width = obs.values.shape[0]
        if old is not None and old.ring is not None and old.ring.values.shape[1] == width:
            return _StreamState(schema, old.ring)
        rate = schema.rate_hz if schema is not None else 60.0
        capacity = max(16, min(self.config.max_samples, int(self.config.window_s * rate * 1.25)))
        return _StreamState(schema, VectorRing(capacity, width))

    def _predict(self, prediction: Prediction) -> None:
        key = (prediction.asset, prediction.stream)
        record = PredictionRecord(
            prediction.origin_t_ns,
            prediction.horizons_s.astype(np.float64),
            prediction.mean.astype(np.float64),
            prediction.lower.astype(np.float64),
            prediction.upper.astype(np.float64),
            prediction.level,
            prediction.model,
        )
        self._latest_prediction[key] = record
        kept = self._predictions.get(key)
        if kept is None:
            kept = self._predictions[key] = deque(maxlen=self.config.max_predictions)
        min_gap_ns = int(1e9 / self.config.prediction_hz)
        if not kept or record.origin_t_ns - kept[-1].origin_t_ns >= min_gap_ns:
            kept.append(record)

    # --- reading (any thread) ----------------------------------------------------------------
    def health(self) -> FeedHealth:
        with self._lock:
            counts = self._counts
            age = time.monotonic() - counts.last_message if counts.last_message else None
            return FeedHealth(counts.bus_ok, age, counts.received, counts.error, self.config.bus.sub_endpoint)

    def streams(self, asset: str | None = None) -> list[StreamInfo]:
        with self._lock:
            items = sorted(self._streams.items())
        out = []
        for (name, stream), state in items:
            if asset is not None and name != asset:
                continue
            schema = state.schema
            kind = "image" if state.ring is None else "vector"
            sensors = tuple(s.name for s in schema.sensors) if schema else ()
            units = tuple(s.unit for s in schema.sensors) if schema else ()
            if kind == "vector" and not sensors and state.ring is not None:
                width = state.ring.values.shape[1]
                sensors, units = tuple(f"v{i}" for i in range(width)), ("",) * width
            out.append(StreamInfo(name, stream, kind, sensors, units, schema.rate_hz if schema else 0.0))
        return out

    def assets(self) -> list[str]:
        with self._lock:
            return sorted({asset for asset, _ in self._streams})

    def vector(self, asset: str, stream: str, window_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(t_ns, values)`` of the last ``window_s`` seconds (sim time) of a vector stream."""
        with self._lock:
            state = self._streams.get((asset, stream))
            if state is None or state.ring is None or state.ring.count == 0:
                return np.zeros(0, dtype=np.int64), np.zeros((0, 0))
            latest = state.ring.t_ns[(state.ring._next - 1) % state.ring.capacity]
            since = 0 if window_s is None else int(latest - window_s * 1e9)
            return state.ring.window(since)

    def frame(self, asset: str, stream: str = "camera") -> tuple[int, np.ndarray] | None:
        with self._lock:
            state = self._streams.get((asset, stream))
            if state is None or state.frame is None:
                return None
            return state.frame_t_ns, state.frame

    def predictions(self, asset: str, stream: str) -> list[PredictionRecord]:
        with self._lock:
            return list(self._predictions.get((asset, stream), ()))

    def latest_prediction(self, asset: str, stream: str) -> PredictionRecord | None:
        with self._lock:
            return self._latest_prediction.get((asset, stream))

    def events(self, asset: str | None = None) -> list[Event]:
        with self._lock:
            return [e for e in self._events if asset is None or e.asset == asset]

    def status(self) -> list[AssetStatus]:
        """Every asset heard so far with its live/stale/offline status, rates and gaps."""
        now = time.monotonic()
        with self._lock:
            stats = self._counts.stats
            heartbeats = dict(self._counts.heartbeats)
            by_asset: dict[str, list[tuple[str, _StreamState]]] = {}
            for (asset, stream), state in self._streams.items():
                by_asset.setdefault(asset, []).append((stream, state))
            latest = dict(self._latest_prediction)
            surprise_rings = {
                a: s.ring.values[(s.ring._next - 1) % s.ring.capacity, 0]
                for (a, name), s in self._streams.items()
                if name == SURPRISE_STREAM and s.ring is not None and s.ring.count
            }
        rates: dict[str, float] = {}
        gaps: dict[str, int] = {}
        for row in stats.streams if stats else ():
            parts = row.topic.split(".")
            if parts[0] == "obs" and len(parts) == 3:
                rates[parts[1]] = rates.get(parts[1], 0.0) + row.rate_hz
                gaps[parts[1]] = gaps.get(parts[1], 0) + row.gaps
        out = []
        for asset, items in sorted(by_asset.items()):
            arrived = max(state.arrived for _, state in items)
            sources = {state.source for _, state in items}
            beats = [now - heartbeats[s] for s in sources if s in heartbeats]
            data_age = now - arrived if arrived else None
            models = sorted({p.model for (a, _), p in latest.items() if a == asset and p.model})
            last_t = max(
                (
                    int(s.ring.t_ns[(s.ring._next - 1) % s.ring.capacity])
                    for _, s in items
                    if s.ring and s.ring.count
                ),
                default=0,
            )
            surprise = surprise_rings.get(asset)
            out.append(
                AssetStatus(
                    asset=asset,
                    status=asset_status(data_age, min(beats) if beats else None),
                    data_age_s=data_age,
                    rate_hz=rates.get(asset, 0.0),
                    gaps=gaps.get(asset, 0),
                    streams=tuple(sorted(name for name, _ in items)),
                    model=", ".join(models),
                    surprise=None if surprise is None else float(surprise),
                    last_t_ns=last_t,
                )
            )
        return out
