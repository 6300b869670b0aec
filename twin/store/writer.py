"""Write recorder operations to the store from a thread, in batches, surviving database outages.

The receive path calls :meth:`BatchWriter.submit` and never touches the database. A writer thread
takes up to ``batch_size`` operations (or what arrived within ``flush_interval_s``) and applies
them in one transaction. When the database is unreachable (locked, read-only, connection
terminated, server restarting) the batch is kept and retried with exponential back-off while
the bounded queue absorbs new operations; a clear alarm is logged when the outage starts, while
it lasts, and when it ends. Nothing already accepted is dropped unless shutdown gives up after
``flush_timeout_s`` (counted as ``lost`` and logged).

When the queue is full, ``overflow="block"`` makes :meth:`submit` wait (back-pressure: the bus's
high-water marks then drop frames, which subscribers count as gaps), ``overflow="shed"`` drops
the frame, counted under ``shed`` and logged. Episode and schema operations always block.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import exc
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from twin.store.recording import EpisodeClose, EpisodeOpen, EpisodeUpdate, Frame, Op, SchemaSeen, apply_ops

log = logging.getLogger(__name__)

_STOP = object()
_ALARM_EVERY_S = 10.0


@dataclass(frozen=True, slots=True)
class WriterConfig:
    """How the writer batches, buffers and retries."""

    batch_size: int = 1_000
    flush_interval_s: float = 0.2
    queue_size: int = 20_000
    overflow: Literal["block", "shed"] = "block"
    retry_initial_s: float = 0.1
    retry_max_s: float = 5.0
    flush_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("batch_size", "queue_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"WriterConfig.{name}={value!r} must be a positive integer")
        for name in ("flush_interval_s", "retry_initial_s", "retry_max_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"WriterConfig.{name}={getattr(self, name)!r} must be > 0")
        if not self.flush_timeout_s >= 0:
            raise ValueError(f"WriterConfig.flush_timeout_s={self.flush_timeout_s!r} must be >= 0")
        if self.overflow not in ("block", "shed"):
            raise ValueError(f"WriterConfig.overflow={self.overflow!r} must be 'block' or 'shed'")


@dataclass
class WriterStats:
    """What the writer did; read after :meth:`BatchWriter.close` (or live, approximately)."""

    written: Counter[str] = field(default_factory=Counter)
    """Rows submitted in committed batches, by kind (duplicates the database ignored included)."""
    batches: int = 0
    db_errors: int = 0
    outages: int = 0
    longest_outage_s: float = 0.0
    last_outage_s: float = 0.0
    shed: Counter[str] = field(default_factory=Counter)
    lost: int = 0
    rejected_by_db: int = 0
    max_queue: int = 0
    episodes: list[int] = field(default_factory=list)


def is_transient(error: BaseException) -> bool:
    """True if ``error`` means the database is unavailable (retry), not that the data is bad."""
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, (exc.OperationalError, exc.InterfaceError, exc.TimeoutError))


class BatchWriter:
    """A writer thread for ``engine``; use as a context manager or call start/close."""

    def __init__(
        self,
        engine: Engine,
        config: WriterConfig | None = None,
        *,
        on_episode_closed: Callable[[int, str], None] | None = None,
    ) -> None:
        self.engine = engine
        self.config = config or WriterConfig()
        self.stats = WriterStats()
        self.on_episode_closed = on_episode_closed
        self._queue: queue.Queue[object] = queue.Queue(self.config.queue_size)
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._episode_ids: dict[int, int] = {}
        self._asset_ids: dict[str, int] = {}
        self._give_up_at: float | None = None
        self._abandoned = threading.Event()
        self._wake = threading.Event()
        self._down_since: float | None = None
        self._last_alarm = 0.0
        self._last_shed_log = 0.0

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> BatchWriter:
        self._thread.start()
        return self

    def begin_shutdown(self) -> None:
        """From now on, give up on an unreachable database after ``flush_timeout_s``."""
        if self._give_up_at is None:
            self._give_up_at = time.monotonic() + self.config.flush_timeout_s
            self._wake.set()

    def close(self) -> WriterStats:
        """Flush everything submitted (within ``flush_timeout_s`` if the database is down)."""
        self.begin_shutdown()
        self._put(_STOP)
        self._thread.join()
        return self.stats

    def __enter__(self) -> BatchWriter:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def alarm(self) -> bool:
        """True while the database is unreachable."""
        return self._down_since is not None

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    # --- receive side ----------------------------------------------------------------------------
    def submit(self, op: Op) -> bool:
        """Queue ``op`` for writing; False if it was shed or lost (counted and logged)."""
        if isinstance(op, Frame) and self.config.overflow == "shed":
            try:
                self._queue.put_nowait(op)
            except queue.Full:
                self.stats.shed["queue_full"] += 1
                now = time.monotonic()
                if now - self._last_shed_log >= _ALARM_EVERY_S:
                    self._last_shed_log = now
                    log.warning(
                        "recorder write queue full (%d): shedding frames, %d shed so far",
                        self.config.queue_size,
                        sum(self.stats.shed.values()),
                    )
                return False
        elif not self._put(op):
            return False
        self.stats.max_queue = max(self.stats.max_queue, self._queue.qsize())
        return True

    def _put(self, item: object) -> bool:
        while True:
            if self._abandoned.is_set() and item is not _STOP:
                self.stats.lost += isinstance(item, Frame)
                return False
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue

    # --- writer thread -------------------------------------------------------------------------
    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch: list[Op] = []
            deadline = time.monotonic() + self.config.flush_interval_s
            while len(batch) < self.config.batch_size:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)  # type: ignore[arg-type]
            if batch and not self._write_with_retry(batch):
                self._abandon()
                stopping = True

    def _abandon(self) -> None:
        self._abandoned.set()
        dropped = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            dropped += isinstance(item, Frame)
        self.stats.lost += dropped
        log.error(
            "database still unreachable after the %.0f s flush timeout: gave up on %d frame(s)",
            self.config.flush_timeout_s,
            self.stats.lost,
        )

    def _write_with_retry(self, batch: Sequence[Op]) -> bool:
        delay = self.config.retry_initial_s
        while True:
            try:
                self._write(batch)
            except (exc.SQLAlchemyError, KeyError) as error:
                if isinstance(error, KeyError) or not is_transient(error):
                    log.error("database refused a batch of %d (%s); writing one by one", len(batch), error)
                    self._write_one_by_one(batch)
                    return True
                self._outage(error)
                if self._give_up_at is not None and time.monotonic() >= self._give_up_at:
                    self.stats.lost += sum(isinstance(op, Frame) for op in batch)
                    return False
                self._wake.wait(delay)
                self._wake.clear()
                delay = min(2 * delay, self.config.retry_max_s)
                continue
            self._recovered()
            return True

    def _write(self, batch: Sequence[Op]) -> None:
        episode_ids, asset_ids = dict(self._episode_ids), dict(self._asset_ids)
        with Session(self.engine) as session:
            written, closed = apply_ops(session, batch, episode_ids, asset_ids)
            session.commit()
        self._episode_ids, self._asset_ids = episode_ids, asset_ids
        self.stats.written.update(written)
        self.stats.batches += 1
        self.stats.episodes.extend(
            episode_ids[op.key] for op in batch if isinstance(op, EpisodeOpen) and op.key in episode_ids
        )
        for episode_id, reason in closed:
            if self.on_episode_closed is not None:
                self.on_episode_closed(episode_id, reason)

    def _write_one_by_one(self, batch: Sequence[Op]) -> None:
        for op in batch:
            try:
                self._write([op])
            except (exc.SQLAlchemyError, KeyError) as error:
                if isinstance(error, exc.SQLAlchemyError) and is_transient(error):
                    self._write_with_retry([op])
                    continue
                self.stats.rejected_by_db += 1
                log.error("database refused %s: %s", type(op).__name__, error)

    def _outage(self, error: BaseException) -> None:
        self.stats.db_errors += 1
        now = time.monotonic()
        first_line = str(error).splitlines()[0][:200]
        if self._down_since is None:
            self._down_since = now
            self._last_alarm = now
            self.stats.outages += 1
            log.error(
                "ALARM database unavailable (%s): buffering writes (%d queued, limit %d), retrying",
                first_line,
                self._queue.qsize(),
                self.config.queue_size,
            )
        elif now - self._last_alarm >= _ALARM_EVERY_S:
            self._last_alarm = now
            log.error(
                "ALARM database unavailable for %.0f s (%s): %d queued, limit %d",
                now - self._down_since,
                first_line,
                self._queue.qsize(),
                self.config.queue_size,
            )

    def _recovered(self) -> None:
        if self._down_since is not None:
            outage = time.monotonic() - self._down_since
            self.stats.longest_outage_s = max(self.stats.longest_outage_s, outage)
            self.stats.last_outage_s = outage
            self._down_since = None
            log.warning("database available again after %.1f s; buffered writes flushed", outage)


__all__ = [
    "BatchWriter",
    "EpisodeClose",
    "EpisodeOpen",
    "EpisodeUpdate",
    "Frame",
    "SchemaSeen",
    "WriterConfig",
    "WriterStats",
    "is_transient",
]
