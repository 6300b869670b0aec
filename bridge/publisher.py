"""Publish typed messages onto the bus, numbered per topic, with heartbeats and schema announces.

The socket is an XPUB connected to the bus's XSUB side, so the publisher sees subscriptions:
:meth:`Publisher.open` waits (bounded) until the bus's own ``schema.`` subscription arrives,
which proves the connection is up, and :meth:`Publisher.wait_subscribed` lets a caller wait for
a subscriber of a given topic instead of sleeping (the slow-joiner problem).

Sends never block: at the high-water mark a frame is dropped, counted, and its seq still
consumed, so subscribers see the gap. Heartbeats (every ``BusConfig.heartbeat_s``) carry the last
seq of each topic and re-announce schemas for late joiners and for a restarted bus.
"""

from __future__ import annotations

import logging
import time

import zmq

from bridge.config import DATA_HWM, BusConfig
from bridge.messages import Heartbeat, Message, StreamSchema, check_name
from bridge.protocol import encode, wire_topic

log = logging.getLogger(__name__)

_MORE_NOBLOCK = zmq.SNDMORE | zmq.NOBLOCK
_REANNOUNCE_PER_BEAT = 8
_ZERO_COPY_BYTES = 65536  # below this a copy is cheaper than pyzmq's zero-copy bookkeeping


class Publisher:
    """A bus publisher for one ``source``; use as a context manager. Not thread-safe."""

    def __init__(
        self,
        config: BusConfig,
        source: str,
        *,
        role: str = "",
        hwm: int = DATA_HWM,
        connect_timeout_s: float = 2.0,
        linger_s: float = 2.0,
        context: zmq.Context | None = None,
    ) -> None:
        self.config = config
        self.source = check_name("source", source)
        self.role = role
        self.hwm = hwm
        self.connect_timeout_s = connect_timeout_s
        self.linger_s = linger_s
        # A private context by default: closing terminates it, which is what makes libzmq flush
        # the queue (linger) before the process can exit; the shared instance is never
        # terminated, so frames queued at exit would silently vanish.
        self._own_context = context is None
        self._context = context or zmq.Context()
        self._socket: zmq.Socket | None = None
        self._seq: dict[str, int] = {}
        self._schemas: dict[str, StreamSchema] = {}
        self._reannounce_next = 0
        self._subscriptions: set[str] = set()
        self._next_heartbeat = 0.0
        self.sent = 0
        self.dropped = 0
        self._last_drop_log = 0.0

    # --- lifecycle ---------------------------------------------------------------------------
    def open(self) -> Publisher:
        if self._own_context and self._context.closed:  # reopened after close()
            self._context = zmq.Context()
        sock = self._context.socket(zmq.XPUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, self.hwm)
        sock.setsockopt(zmq.XPUB_VERBOSE, 1)
        sock.setsockopt(zmq.XPUB_NODROP, 1)  # EAGAIN at HWM, so drops are counted, not silent
        sock.connect(self.config.pub_endpoint)
        self._socket = sock
        if not self.wait_subscribed("schema.", self.connect_timeout_s):
            log.warning(
                "publisher %s: no bus answering at %s after %.1f s; frames are dropped until it is up",
                self.source,
                self.config.pub_endpoint,
                self.connect_timeout_s,
            )
        self._next_heartbeat = time.monotonic()
        return self

    def close(self) -> None:
        if self._socket is not None:
            try:
                self.heartbeat(status="closing")
            finally:  # flush what was queued (bounded), so a clean exit loses nothing
                self._socket.close(linger=int(self.linger_s * 1000))
                self._socket = None
                if self._own_context:
                    self._context.term()

    def __enter__(self) -> Publisher:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def socket(self) -> zmq.Socket:
        if self._socket is None:
            raise RuntimeError(f"publisher {self.source} is not open (use it as a context manager)")
        return self._socket

    # --- subscriptions -----------------------------------------------------------------------
    def _drain_subscriptions(self, timeout_ms: int = 0) -> None:
        sock = self.socket
        while sock.poll(timeout_ms, zmq.POLLIN):
            timeout_ms = 0
            frame = sock.recv()
            if frame[:1] == b"\x01":
                self._subscriptions.add(frame[1:].decode("utf-8", "replace"))
            elif frame[:1] == b"\x00":
                self._subscriptions.discard(frame[1:].decode("utf-8", "replace"))

    def wait_subscribed(self, topic: str, timeout_s: float) -> bool:
        """Block until some subscription covers ``topic`` (or ``timeout_s`` passes)."""
        deadline = time.monotonic() + timeout_s
        while True:
            if any(topic.startswith(sub) for sub in self._subscriptions):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._drain_subscriptions(timeout_ms=max(1, int(remaining * 1000)))

    # --- sending ----------------------------------------------------------------------------
    def publish(self, message: Message) -> bool:
        """Send ``message`` with this source and the topic's next seq. False if dropped at HWM."""
        topic = wire_topic(message, self.source)  # hb./stats. topics name this source
        seq = self._seq.get(topic, -1) + 1
        self._seq[topic] = seq
        frames = encode(message, source=self.source, seq=seq)
        sent = self._send(frames, topic)
        if time.monotonic() >= self._next_heartbeat:
            self.heartbeat()
        return sent

    def _send(self, frames: list[bytes], topic: str) -> bool:
        sock = self.socket
        try:  # HWM is checked on the first frame; once it is queued, the rest follow atomically
            sock.send(frames[0], _MORE_NOBLOCK)
        except zmq.Again:
            self.dropped += 1
            now = time.monotonic()
            if now - self._last_drop_log > 5.0:
                self._last_drop_log = now
                log.warning(
                    "publisher %s: send queue full (hwm %d), dropped %d frame(s) so far, last on %s",
                    self.source,
                    self.hwm,
                    self.dropped,
                    topic,
                )
            return False
        last = len(frames) - 1
        for i in range(1, last):
            sock.send(frames[i], zmq.SNDMORE, copy=len(frames[i]) < _ZERO_COPY_BYTES)
        sock.send(frames[last], 0, copy=len(frames[last]) < _ZERO_COPY_BYTES)
        self.sent += 1
        return True

    def announce(self, schema: StreamSchema) -> None:
        """Publish ``schema`` now and with every heartbeat, so late joiners and the bus learn it."""
        self._schemas[schema.topic] = schema
        self.publish(schema)

    def heartbeat(self, status: str = "ok") -> None:
        """Publish a heartbeat (last seq per topic, drops) and re-announce some schemas."""
        self._next_heartbeat = time.monotonic() + self.config.heartbeat_s
        self._drain_subscriptions()
        for schema in self._reannounce_batch():
            topic = schema.topic
            seq = self._seq.get(topic, -1) + 1
            self._seq[topic] = seq
            self._send(encode(schema, source=self.source, seq=seq), topic)
        beat = Heartbeat(
            t_ns=time.time_ns(),
            role=self.role,
            status=status,
            last_seq=dict(self._seq),
            dropped=self.dropped,
            source=self.source,
        )
        topic = beat.topic
        seq = self._seq.get(topic, -1) + 1
        self._seq[topic] = seq
        self._send(encode(beat, seq=seq), topic)

    def _reannounce_batch(self) -> list[StreamSchema]:
        """The next few schemas, round robin: a publisher of 100 streams re-announces a few
        per heartbeat instead of bursting 100 messages every second."""
        schemas = list(self._schemas.values())
        if len(schemas) <= _REANNOUNCE_PER_BEAT:
            return schemas
        start = self._reannounce_next % len(schemas)
        self._reannounce_next = start + _REANNOUNCE_PER_BEAT
        return (schemas + schemas)[start : start + _REANNOUNCE_PER_BEAT]

    @property
    def last_seq(self) -> dict[str, int]:
        """The last seq consumed on each topic (dropped frames included)."""
        return dict(self._seq)
