"""What the worker stores, through the store's one writer thread (:class:`BatchWriter`).

Rows are built on the hot path as plain dicts and queued; the writer thread inserts them in
batches (one Core ``INSERT ... ON CONFLICT DO NOTHING`` per table and batch) with the retry,
back-off, alarm and bounded queue of :mod:`twin.store.writer`. Unique keys make every insert
idempotent: a retried batch or a restarted worker never stores a row twice.

Predictions, prediction errors and latent snapshots may be shed (``overflow="shed"``: counted
in ``stats.shed`` by table and logged) once the queue is :data:`SHED_AT` full, which keeps the
rest of the queue for events and memories: those are never shed, and only wait for room
(back-pressure) when the whole queue is full.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bridge import Event
from twin.store import telemetry
from twin.store.models import EventRow, LatentStateRow, MemoryRow, PredictionErrorRow, PredictionRow
from twin.store.writer import BatchWriter

log = logging.getLogger(__name__)

TABLES = {
    "predictions": PredictionRow.__table__,
    "prediction_errors": PredictionErrorRow.__table__,
    "latent_states": LatentStateRow.__table__,
    "memories": MemoryRow.__table__,
    "events": EventRow.__table__,
}
SHEDDABLE = frozenset({"predictions", "prediction_errors", "latent_states"})
SHED_AT = 0.9
"""Fraction of the queue that sheddable rows may fill; the rest is kept for events and memories."""


@dataclass(frozen=True, slots=True)
class RowOp:
    """Insert ``row`` into ``table`` (a key of :data:`TABLES`)."""

    table: str
    row: dict[str, Any]


def f64(values: np.ndarray) -> bytes:
    return np.ascontiguousarray(values, dtype="<f8").tobytes()


def f32(values: np.ndarray) -> bytes:
    return np.ascontiguousarray(values, dtype="<f4").tobytes()


def event_op(event: Event, seq: int, source: str) -> RowOp:
    """The ``events`` row of an event this worker published with ``seq``."""
    row = telemetry.event_row(event)
    row.update(source=source, seq=seq)
    return RowOp("events", row)


class WorkerWriter(BatchWriter):
    """The store's batch writer applied to worker rows (same thread, queue, retry and alarm)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shed_at = max(1, int(self.config.queue_size * SHED_AT))

    def submit(self, op: Any) -> bool:  # type: ignore[override]
        if not isinstance(op, RowOp):
            return super().submit(op)
        if op.table in SHEDDABLE and self.config.overflow == "shed":
            try:
                if self._queue.qsize() >= self._shed_at:
                    raise queue.Full
                self._queue.put_nowait(op)
            except queue.Full:
                self.stats.shed[op.table] += 1
                now = time.monotonic()
                if now - self._last_shed_log >= 10.0:
                    self._last_shed_log = now
                    log.warning(
                        "worker write queue full (%d): shedding %s rows, %s shed so far",
                        self.config.queue_size,
                        op.table,
                        dict(self.stats.shed),
                    )
                return False
        elif not self._put(op):
            return False
        self.stats.max_queue = max(self.stats.max_queue, self._queue.qsize())
        return True

    def _write(self, batch: Sequence[Any]) -> None:
        rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for op in batch:
            rows[op.table].append(op.row)
        with Session(self.engine) as session:
            for table, table_rows in rows.items():
                telemetry.insert_ignoring_duplicates(session, TABLES[table], table_rows)
            session.commit()
        self.stats.written.update(Counter({t: len(r) for t, r in rows.items()}))
        self.stats.batches += 1


def latest_states(engine: Engine, stream: str, assets: Sequence[str] = ()) -> dict[str, LatentStateRow]:
    """The newest latent snapshot of every asset's ``stream`` (only ``assets`` if given)."""
    newest = (
        select(LatentStateRow.asset, func.max(LatentStateRow.t_ns).label("t_ns"))
        .where(LatentStateRow.stream == stream)
        .group_by(LatentStateRow.asset)
        .subquery()
    )
    query = (
        select(LatentStateRow)
        .join(newest, (LatentStateRow.asset == newest.c.asset) & (LatentStateRow.t_ns == newest.c.t_ns))
        .where(LatentStateRow.stream == stream)
    )
    if assets:
        query = query.where(LatentStateRow.asset.in_(list(assets)))
    with Session(engine) as session:
        rows = list(session.execute(query.order_by(LatentStateRow.id)).scalars())
        session.expunge_all()
    return {row.asset: row for row in rows}
