"""The recorder: subscribe to the bus and write episodes into the store, without losing frames.

``twin record`` runs :class:`Recorder`. The receive loop (this thread) takes typed messages from a
:class:`bridge.Subscriber` (bad frames are already rejected and counted there), groups them into
episodes with :class:`twin.store.episodes.EpisodeTracker`, and hands operations to a
:class:`twin.store.writer.BatchWriter`, whose thread writes them in batches and rides out
database outages. On stop (signal, ``duration_s``) every open episode is closed, everything
queued is flushed, and :meth:`Recorder.run` returns a :class:`RecordingSummary`.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bridge.config import BusConfig
from bridge.messages import Action, Event, Message, Observation, StreamSchema, check_name
from bridge.subscriber import Subscriber
from twin.store.episodes import EpisodeTracker
from twin.store.recording import SchemaSeen
from twin.store.writer import BatchWriter

log = logging.getLogger(__name__)

TOPIC_KINDS = ("obs", "act", "event", "schema")


@dataclass(frozen=True, slots=True)
class RecorderConfig:
    """What to record: ``assets`` (empty: all), for ``duration_s`` seconds (None: until stopped)."""

    assets: tuple[str, ...] = ()
    duration_s: float | None = None
    recording: str = ""
    """Id written into every episode of this recording (default: a fresh random id)."""

    def __post_init__(self) -> None:
        assets = tuple(self.assets)
        for asset in assets:
            check_name("asset", asset)
        object.__setattr__(self, "assets", assets)
        if self.duration_s is not None and not self.duration_s > 0:
            raise ValueError(f"RecorderConfig.duration_s={self.duration_s!r} must be > 0 (or None)")
        if not self.recording:
            object.__setattr__(self, "recording", f"rec-{uuid.uuid4().hex[:12]}")
        check_name("recording", self.recording)

    @property
    def topics(self) -> tuple[str, ...]:
        """Topic prefixes to subscribe to (heartbeats too: a closing publisher ends episodes)."""
        if not self.assets:
            return (*(f"{kind}." for kind in TOPIC_KINDS), "hb.")
        return (*(f"{kind}.{asset}." for kind in TOPIC_KINDS for asset in self.assets), "hb.")


@dataclass
class RecordingSummary:
    """What a recording received, wrote, and could not write."""

    recording: str
    seconds: float
    received: Counter[str] = field(default_factory=Counter)
    written: Counter[str] = field(default_factory=Counter)
    episodes: list[int] = field(default_factory=list)
    duplicates: int = 0
    shed: int = 0
    lost: int = 0
    rejected_by_db: int = 0
    db_errors: int = 0
    outages: int = 0
    bus_gaps: int = 0
    bus_rejects: dict[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """True if everything received was written (duplicates aside)."""
        return self.shed == 0 and self.lost == 0 and self.rejected_by_db == 0

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        out["received"], out["written"] = dict(self.received), dict(self.written)
        out["complete"] = self.complete
        return out


class Recorder:
    """Records the bus at ``bus`` through ``writer``; :meth:`run` blocks until stopped."""

    def __init__(self, bus: BusConfig, writer: BatchWriter, config: RecorderConfig | None = None) -> None:
        self.bus = bus
        self.writer = writer
        self.config = config or RecorderConfig()
        self.tracker = EpisodeTracker(self.config.recording)
        self.received: Counter[str] = Counter()
        self.ready = threading.Event()
        self._schemas: set[tuple[str, str, str]] = set()

    def run(self, stop: threading.Event | None = None) -> RecordingSummary:
        """Record until ``stop`` is set or ``duration_s`` passes; flush; return the summary."""
        stop = stop or threading.Event()
        started = time.monotonic()
        deadline = None if self.config.duration_s is None else started + self.config.duration_s
        subscriber = Subscriber(self.bus, self.config.topics, name=f"recorder-{self.config.recording}")
        with subscriber:
            for schema in subscriber.schemas.values():
                self._remember(schema)
            self.ready.set()
            log.info("recording %s from %s", self.config.recording, self.bus.sub_endpoint)
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                message = subscriber.recv(timeout_s=0.1)
                if message is not None:
                    self.handle(message, subscriber)
            for message in subscriber.drain():
                self.handle(message, subscriber)
            snapshot = subscriber.accounting
        self.writer.begin_shutdown()
        for op in self.tracker.close_all():
            self.writer.submit(op)
        stats = self.writer.close()
        gaps = sum(counter.gaps for counter in snapshot.streams.values())
        summary = RecordingSummary(
            recording=self.config.recording,
            seconds=round(time.monotonic() - started, 3),
            received=Counter(self.received),
            written=Counter(stats.written),
            episodes=list(stats.episodes),
            duplicates=self.tracker.duplicates,
            shed=sum(stats.shed.values()),
            lost=stats.lost,
            rejected_by_db=stats.rejected_by_db,
            db_errors=stats.db_errors,
            outages=stats.outages,
            bus_gaps=gaps,
            bus_rejects=dict(snapshot.rejects),
        )
        log.info("recording %s done: %s", self.config.recording, summary.as_dict())
        return summary

    def handle(self, message: Message, subscriber: Subscriber | None = None) -> None:
        """Record one accepted message (public so tests can drive it without sockets)."""
        if isinstance(message, StreamSchema):
            self._remember(message)
            return
        if isinstance(message, (Observation, Action, Event)):
            if self.config.assets and message.asset not in self.config.assets:
                return
            self.received[type(message).KIND] += 1
            if isinstance(message, Observation) and subscriber is not None:
                schema = subscriber.schemas.get((message.asset, message.stream))
                if schema is not None:
                    self._remember(schema)
        for op in self.tracker.on_message(message):
            self.writer.submit(op)

    def _remember(self, schema: StreamSchema) -> None:
        if self.config.assets and schema.asset not in self.config.assets:
            return
        key = (schema.asset, schema.stream, schema.schema_id)
        if key not in self._schemas:
            self._schemas.add(key)
            self.writer.submit(SchemaSeen(schema))
