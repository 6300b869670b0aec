"""Episodic memory: salient moments of an asset kept as latent keys, searchable by similarity.

The worker remembers anomalies (when detected), operator notes (``event.<asset>.note``) and a
periodic keyframe; each is a row of ``memories`` with the latent ``key`` (float32) and a JSON
``context`` (sensor values, surprise, the event). :func:`search` answers "when did we see this
before?": the moment nearest to a time (a memory or a latent snapshot) is the query, and the most
similar other moments of the asset (cosine similarity of keys) come back, best first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from twin.store.models import LatentStateRow, MemoryRow
from twin.worker.persistence import RowOp, f32

KINDS = ("anomaly", "note", "keyframe")


@dataclass(frozen=True, slots=True)
class Moment:
    """A remembered moment and how similar it is to the query (1: same direction)."""

    asset: str
    t_ns: int
    kind: str
    similarity: float
    context: dict[str, Any]


def memory_op(asset: str, t_ns: int, kind: str, model: str, z: np.ndarray, context: dict[str, Any]) -> RowOp:
    if kind not in KINDS:
        raise ValueError(f"memory kind {kind!r} not in {KINDS}")
    row = {"asset": asset, "t_ns": t_ns, "kind": kind, "model": model, "key": f32(z), "context": context}
    return RowOp("memories", row)


def parse_time(text: str) -> int:
    """A time as integer ns: ``t_ns`` digits, Unix seconds with a dot, or ISO 8601."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        seconds = float(text)
    except ValueError:
        try:
            return int(datetime.fromisoformat(text).timestamp() * 1e9)
        except ValueError:
            raise ValueError(f"time {text!r}: give t_ns, Unix seconds or ISO 8601") from None
    if not math.isfinite(seconds):
        raise ValueError(f"time {text!r} is not finite")
    return int(seconds * 1e9)


def _nearest_key(session: Session, asset: str, t_ns: int) -> tuple[np.ndarray, str, int] | None:
    best: tuple[np.ndarray, str, int] | None = None
    for table in (MemoryRow, LatentStateRow):
        distance = func.abs(table.t_ns - t_ns)
        row = session.execute(
            select(table.key if table is MemoryRow else table.z, table.model, table.t_ns)
            .where(table.asset == asset)
            .order_by(distance)
            .limit(1)
        ).first()
        if row is not None and (best is None or abs(row[2] - t_ns) < abs(best[2] - t_ns)):
            best = (np.frombuffer(row[0], dtype="<f4"), row[1], row[2])
    return best


def search(engine: Engine, asset: str, like_t_ns: int, k: int = 5, exclude_s: float = 2.0) -> list[Moment]:
    """The ``k`` moments of ``asset`` most similar to its state at ``like_t_ns`` (moments within
    ``exclude_s`` of it are left out: they are the query itself)."""
    with Session(engine) as session:
        query = _nearest_key(session, asset, like_t_ns)
        if query is None:
            return []
        key, model, query_t = query
        rows = session.execute(
            select(MemoryRow.t_ns, MemoryRow.kind, MemoryRow.key, MemoryRow.context).where(
                MemoryRow.asset == asset, MemoryRow.model == model
            )
        ).all()
    exclude_ns = int(exclude_s * 1e9)
    rows = [r for r in rows if abs(r[0] - query_t) > exclude_ns and len(r[2]) == key.nbytes]
    if not rows:
        return []
    keys = np.stack([np.frombuffer(r[2], dtype="<f4") for r in rows])
    sims = keys @ key / (np.linalg.norm(keys, axis=1) * np.linalg.norm(key) + 1e-12)
    order = np.argsort(-sims)[:k]
    return [
        Moment(asset, int(rows[i][0]), rows[i][1], round(float(sims[i]), 4), dict(rows[i][3])) for i in order
    ]
