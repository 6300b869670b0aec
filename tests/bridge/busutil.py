"""Helpers for the bus tests: schemas, bounded receive loops, a raw frame injector."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import zmq

from bridge import BusConfig, Message, SensorSpec, StreamSchema, Subscriber

TIMEOUT_S = 5.0
"""Upper bound of every wait in these tests; a healthy bus answers in milliseconds."""


def vector_schema(asset: str = "rig", stream: str = "imu", dtype: str = "<f4") -> StreamSchema:
    """Three channels: ``ax`` forbids NaN and is bounded, ``ay`` forbids NaN, ``az`` allows NaN."""
    return StreamSchema(
        asset=asset,
        stream=stream,
        kind="vector",
        dtype=dtype,
        shape=(3,),
        rate_hz=100.0,
        sensors=(
            SensorSpec("ax", "m/s^2", low=-10.0, high=10.0),
            SensorSpec("ay", "m/s^2"),
            SensorSpec("az", "m/s^2", allow_nan=True),
        ),
    )


def image_schema(asset: str = "rig", stream: str = "cam") -> StreamSchema:
    """A 64x64 RGB camera (``|u1``)."""
    return StreamSchema(
        asset=asset,
        stream=stream,
        kind="image",
        dtype="|u1",
        shape=(64, 64, 3),
        rate_hz=30.0,
        sensors=tuple(SensorSpec(c, "1") for c in "rgb"),
    )


def recv_until(
    sub: Subscriber, predicate: Callable[[Message], bool], timeout_s: float = TIMEOUT_S
) -> Message | None:
    """Receive until ``predicate`` holds for a message (returned) or ``timeout_s`` passes (None)."""
    deadline = time.monotonic() + timeout_s
    while (remaining := deadline - time.monotonic()) > 0:
        message = sub.recv(timeout_s=remaining)
        if message is not None and predicate(message):
            return message
    return None


def wait_for(condition: Callable[[], bool], timeout_s: float = TIMEOUT_S, step_s: float = 0.01) -> bool:
    """Poll ``condition`` until true or ``timeout_s`` passes; return its last value."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return condition()
        threading.Event().wait(step_s)
    return True


class RawInjector:
    """A raw XPUB connected to the bus's publisher side: sends any frames, even broken ones.

    Being an XPUB it sees subscriptions, so :meth:`wait_subscribed` replaces the usual sleep.
    """

    def __init__(self, config: BusConfig, context: zmq.Context) -> None:
        self.socket = context.socket(zmq.XPUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(config.pub_endpoint)
        self.subscriptions: set[bytes] = set()

    def wait_subscribed(self, topic: bytes, timeout_s: float = TIMEOUT_S) -> bool:
        deadline = time.monotonic() + timeout_s
        while not any(topic.startswith(s) for s in self.subscriptions):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.socket.poll(int(remaining * 1000) + 1):
                return False
            frame = self.socket.recv()
            if frame[:1] == b"\x01":
                self.subscriptions.add(frame[1:])
        return True

    def send(self, frames: list[bytes]) -> None:
        self.socket.send_multipart(frames)

    def close(self) -> None:
        self.socket.close(linger=0)


def term_finishes(context: zmq.Context, timeout_s: float = TIMEOUT_S) -> bool:
    """Run ``context.term()`` in a thread; False if it is still blocked after ``timeout_s``
    (a socket of that context was left open)."""
    thread = threading.Thread(target=context.term, name="test-term", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return not thread.is_alive()


def ramp(seq: int, n: int = 3, dtype: str = "<f4") -> np.ndarray:
    """Values that encode their own seq, so order and content can both be checked."""
    return np.full(n, seq, dtype=dtype)


class LineReader:
    """Reads a child process's stdout lines in a thread, so every read can have a timeout."""

    def __init__(self, stream) -> None:
        import queue

        self.lines: queue.Queue[str] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), name="test-lines", daemon=True)
        self._thread.start()

    def _pump(self, stream) -> None:
        for line in iter(stream.readline, ""):
            self.lines.put(line)
        self.lines.put("")  # EOF

    def readline(self, timeout_s: float = TIMEOUT_S) -> str | None:
        """The next line (``""`` at EOF), or None when nothing came within ``timeout_s``."""
        import queue

        try:
            return self.lines.get(timeout=timeout_s)
        except queue.Empty:
            return None
