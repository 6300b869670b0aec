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
from collections.abc import Callable, Sequence
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
    """The store's batch writer applied to worker rows (same thread, queue, retry and alarm).

    ``prepare`` (e.g. the migrations, when the database was unreachable at start-up) runs in
    the writer thread before the first batch; while it raises "unavailable", batches are kept
    and retried with the writer's back-off, alarm and bounded queue like any outage."""

    def __init__(self, *args: Any, prepare: Callable[[], None] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shed_at = max(1, int(self.config.queue_size * SHED_AT))
        self._prepare = prepare

    def mark_unavailable(self, error: BaseException) -> None:
        """Record an outage that began before the first write (start-up): the alarm is logged now
        and the loop publishes it; the recovery is logged at the first committed batch."""
        self._outage(error)

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
        if self._prepare is not None:
            self._prepare()  # raises while the database is unreachable: the batch is retried
            self._prepare = None
            log.info("database reachable: migrations applied; writing the buffered rows")
        rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for op in batch:
            rows[op.table].append(op.row)
        with Session(self.engine) as session:
            for table, table_rows in rows.items():
                telemetry.insert_ignoring_duplicates(session, TABLES[table], table_rows)
            session.commit()
        self.stats.written.update(Counter({t: len(r) for t, r in rows.items()}))
        self.stats.batches += 1


def latest_states(
    engine: Engine, stream: str, serves: Callable[[str], bool] | None = None
) -> dict[str, LatentStateRow]:
    """The newest latent snapshot of every asset's ``stream`` (only the assets ``serves``
    accepts, if given: :meth:`~twin.worker.config.WorkerConfig.serves`)."""
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
    with Session(engine) as session:
        rows = list(session.execute(query.order_by(LatentStateRow.id)).scalars())
        session.expunge_all()
    return {row.asset: row for row in rows if serves is None or serves(row.asset)}


PENDING_LOOKBACK_S = 120.0
"""How far before a snapshot to look for predictions whose targets come after it."""


def pending_predictions(engine: Engine, snapshots: dict[str, LatentStateRow]) -> dict[str, list[Any]]:
    """Per asset, the stored predictions of the snapshot's model whose target times come after
    the snapshot and whose errors are not stored yet, as :class:`~twin.worker.assets.Pending`
    (one per horizon): what a killed worker still owed when it stopped. A restarted worker
    resolves them when the observations at their targets arrive; the unique key of
    ``prediction_errors`` keeps each error stored once."""
    from twin.worker.assets import Pending

    out: dict[str, list[Any]] = {}
    lookback = round(PENDING_LOOKBACK_S * 1e9)
    with Session(engine) as session:
        for asset, snapshot in snapshots.items():
            since = snapshot.t_ns - lookback
            predictions = session.execute(
                select(PredictionRow)
                .where(
                    PredictionRow.asset == asset,
                    PredictionRow.stream == snapshot.stream,
                    PredictionRow.model == snapshot.model,
                    PredictionRow.origin_t_ns > since,
                )
                .order_by(PredictionRow.origin_t_ns)
            ).scalars()
            done = {
                (origin, round(horizon * 1e9))
                for origin, horizon in session.execute(
                    select(PredictionErrorRow.origin_t_ns, PredictionErrorRow.horizon_s).where(
                        PredictionErrorRow.asset == asset,
                        PredictionErrorRow.stream == snapshot.stream,
                        PredictionErrorRow.model == snapshot.model,
                        PredictionErrorRow.origin_t_ns > since,
                    )
                )
            }
            pending = []
            for row in predictions:
                horizons = [float(h) for h in row.horizons_s]
                shape = (len(horizons), -1)
                mean, low, high = (
                    np.frombuffer(b, dtype="<f8").reshape(shape) for b in (row.mean, row.lower, row.upper)
                )
                for k, horizon in enumerate(horizons):
                    target = row.origin_t_ns + round(horizon * 1e9)
                    if target > snapshot.t_ns and (row.origin_t_ns, round(horizon * 1e9)) not in done:
                        pending.append(
                            Pending(
                                row.origin_t_ns,
                                horizon,
                                target,
                                mean[k].copy(),
                                low[k].copy(),
                                high[k].copy(),
                                row.model,
                            )
                        )
            if pending:
                out[asset] = pending
    return out
