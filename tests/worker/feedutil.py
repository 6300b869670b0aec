"""A scripted test feed for worker tests: cartpole-shaped frames for several assets on the real
bus, a stream clock the test controls, a bus listener, the worker database, and waiting with
timeouts (never sleeping to synchronise).

The stream clock starts well in the past and advances 1/30 s per step, so a feed may run faster
than real time without tripping the worker's "from the future" check.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from bridge import BusConfig, Event, Observation, Prediction, Publisher, StreamSchema, Subscriber

STEP_NS = round(1e9 / 30)


def cartpole_schema(model_path: Path, asset: str) -> StreamSchema:
    """The stream schema the tiny model was trained on, for ``asset``."""
    from twin.model.checkpoint import load_checkpoint

    trained = load_checkpoint(model_path).schema
    return dataclasses.replace(trained, asset=asset, t_ns=0, source="", seq=-1)


def nominal(k: int, phase: float = 0.0) -> np.ndarray:
    """A smooth cart-pole-like state at step ``k`` (SI, inside every sensor range)."""
    t = k / 30.0 + phase
    return np.array(
        [
            0.4 * math.sin(0.7 * t),
            0.28 * math.cos(0.7 * t),
            0.08 * math.sin(1.9 * t),
            0.152 * math.cos(1.9 * t),
        ]
    )


Tamper = Callable[[int, Observation], Observation | None]
"""(step, frame) -> the frame to send instead (None: send nothing this step)."""


class Feed:
    """Publishes one frame per asset per step on ``state``; ``tamper`` rewrites an asset's frames."""

    def __init__(self, publisher: Publisher, schemas: dict[str, StreamSchema], t0_ns: int | None = None):
        self.publisher = publisher
        self.schemas = dict(schemas)
        self.t0_ns = time.time_ns() - 300 * 10**9 if t0_ns is None else t0_ns
        self.tamper: dict[str, Tamper] = {}
        self.unannounced: set[str] = set()
        self.after_step: Callable[[int], None] | None = None
        """Called in the feeding thread after each step's frames (e.g. to publish an event)."""
        """Assets whose schema :meth:`announce` keeps to itself."""
        self.phase = {asset: 0.37 * i for i, asset in enumerate(schemas)}
        self.step = 0
        self.sent: list[Observation] = []

    def t_ns(self, step: int) -> int:
        return self.t0_ns + step * STEP_NS

    def step_at(self, t_ns: int) -> int:
        """The step whose frames carry ``t_ns`` (exactly)."""
        step, rest = divmod(t_ns - self.t0_ns, STEP_NS)
        assert rest == 0, f"t_ns {t_ns} is not a step of this feed"
        return step

    def announce(self, schema: StreamSchema | None = None) -> None:
        for s in [schema] if schema is not None else self.schemas.values():
            self.schemas[s.asset] = s
            if s.asset not in self.unannounced:
                self.publisher.announce(s)

    def frame(self, asset: str, step: int) -> Observation:
        schema = self.schemas[asset]
        values = nominal(step, self.phase[asset])
        return Observation(asset, schema.stream, self.t_ns(step), values, schema.schema_id)

    def publish_step(self) -> None:
        for asset in self.schemas:
            frame = self.frame(asset, self.step)
            tamper = self.tamper.get(asset)
            if tamper is not None:
                frame = tamper(self.step, frame)
            if frame is not None:
                assert self.publisher.publish(frame), "the bus dropped a test frame"
                self.sent.append(frame)
        if self.after_step is not None:
            self.after_step(self.step)
        self.step += 1

    def run(self, steps: int, rate_hz: float = 120.0, stop: threading.Event | None = None) -> None:
        """Publish ``steps`` steps at about ``rate_hz`` steps per wall second (pacing only)."""
        start = time.monotonic()
        for i in range(steps):
            if stop is not None and stop.is_set():
                return
            self.publish_step()
            ahead = start + (i + 1) / rate_hz - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)


class Listener:
    """Collects every message on ``topics`` in a thread; :meth:`wait_for` polls with a timeout."""

    def __init__(self, bus: BusConfig, topics: tuple[str, ...]) -> None:
        self.bus = bus
        self.topics = topics
        self.messages: list[Any] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-listener", daemon=True)

    def _run(self) -> None:
        name = f"test-{uuid.uuid4().hex[:6]}"
        with Subscriber(self.bus, self.topics, name=name, require_schema=False) as sub:
            self._ready.set()
            while not self._stop.is_set():
                message = sub.recv(timeout_s=0.05)
                if message is not None:
                    with self._lock:
                        self.messages.append(message)

    def __enter__(self) -> Listener:
        self._thread.start()
        assert self._ready.wait(15), "test listener did not connect to the bus"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def snapshot(self) -> list[Any]:
        with self._lock:
            return list(self.messages)

    def events(self, asset: str | None = None, name: str | None = None) -> list[Event]:
        return [
            m
            for m in self.snapshot()
            if isinstance(m, Event)
            and (asset is None or m.asset == asset)
            and (name is None or m.name == name)
        ]

    def predictions(self, asset: str | None = None) -> list[Prediction]:
        return [
            m for m in self.snapshot() if isinstance(m, Prediction) and (asset is None or m.asset == asset)
        ]

    def wait_for(self, condition: Callable[[], Any], timeout_s: float = 30.0, what: str = "") -> Any:
        return wait_until(condition, timeout_s, what)


def wait_until(condition: Callable[[], Any], timeout_s: float = 30.0, what: str = "") -> Any:
    """Poll ``condition`` until it is truthy (and return it); fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or condition}")
        time.sleep(0.05)


@contextmanager
def feeding(feed: Feed, rate_hz: float = 120.0, max_steps: int = 100_000) -> Iterator[threading.Event]:
    """Run ``feed`` in a thread until the block ends (or ``max_steps``)."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            feed.run(max_steps, rate_hz, stop)
        except BaseException as exc:  # reported in the test thread
            errors.append(exc)

    thread = threading.Thread(target=run, name="test-feed", daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(10)
    if errors:
        raise errors[0]


def rows(url: str, query: sa.Executable) -> list[Any]:
    """Run ``query`` on the database at ``url`` with a short-lived engine."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            return list(connection.execute(query).all())
    finally:
        engine.dispose()


def count(url: str, table: Any, *where: Any) -> int:
    return rows(url, sa.select(sa.func.count()).select_from(table).where(*where))[0][0]
