"""Write bus messages into the store: assets, stream schemas, episodes, and batched telemetry.

Every function takes a :class:`~sqlalchemy.orm.Session` and never commits: the caller owns the
transaction (the recorder writes one batch per transaction). Telemetry goes in with one Core
``INSERT ... ON CONFLICT DO NOTHING`` per table and batch (an executemany), so a frame written
twice (a retried batch, a duplicate delivery) is stored once on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import Table, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bridge.messages import Action, Event, Observation, StreamSchema
from twin.store.models import ActionRow, Asset, Episode, EventRow, ObservationRow, Stream, utcnow

Row = dict[str, Any]


# --- arrays ------------------------------------------------------------------------------------
def encode_values(values: np.ndarray) -> tuple[str, list[int], bytes]:
    """``(dtype, shape, data)``: little-endian dtype string, shape list, raw C-order bytes."""
    little = values.astype(values.dtype.newbyteorder("<"), copy=False)
    return little.dtype.str, list(values.shape), np.ascontiguousarray(little).tobytes()


def decode_values(dtype: str, shape: Sequence[int], data: bytes) -> np.ndarray:
    """The array stored as ``(dtype, shape, data)`` (a read-only view of ``data``)."""
    return np.frombuffer(data, dtype=np.dtype(dtype)).reshape(tuple(shape))


# --- rows from bus messages ----------------------------------------------------------------------
def observation_row(episode_id: int, obs: Observation) -> Row:
    """The ``observations`` row of ``obs`` in episode ``episode_id``."""
    dtype, shape, data = encode_values(obs.values)
    return {
        "episode_id": episode_id,
        "stream": obs.stream,
        "source": obs.source,
        "seq": obs.seq,
        "t_ns": obs.t_ns,
        "schema_id": obs.schema_id,
        "dtype": dtype,
        "shape": shape,
        "data": data,
    }


def action_row(episode_id: int, action: Action) -> Row:
    """The ``actions`` row of ``action`` in episode ``episode_id``."""
    dtype, shape, data = encode_values(action.values)
    return {
        "episode_id": episode_id,
        "stream": action.stream,
        "source": action.source,
        "seq": action.seq,
        "t_ns": action.t_ns,
        "dtype": dtype,
        "shape": shape,
        "data": data,
    }


def event_row(event: Event, episode_id: int | None = None) -> Row:
    """The ``events`` row of ``event`` (``episode_id`` None: outside any episode)."""
    return {
        "asset": event.asset,
        "episode_id": episode_id,
        "t_ns": event.t_ns,
        "category": event.category,
        "name": event.name,
        "severity": event.severity,
        "message": event.message,
        "params": dict(event.params),
        "source": event.source,
        "topic": event.topic,
        "seq": event.seq,
    }


def _bound(value: float) -> float | None:
    return value if math.isfinite(value) else None


def schema_json(schema: StreamSchema) -> dict[str, Any]:
    """What a stream's values mean, as JSON (infinite bounds become null)."""
    return {
        "sensors": [
            {
                "name": s.name,
                "unit": s.unit,
                "low": _bound(s.low),
                "high": _bound(s.high),
                "allow_nan": s.allow_nan,
                "description": s.description,
            }
            for s in schema.sensors
        ],
        "actuators": [
            {"name": a.name, "unit": a.unit, "low": _bound(a.low), "high": _bound(a.high)}
            for a in schema.actuators
        ],
        "description": schema.description,
    }


# --- inserts ---------------------------------------------------------------------------------------
def insert_ignoring_duplicates(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Batched ``INSERT ... ON CONFLICT DO NOTHING`` of ``rows`` into ``table`` (one executemany)."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    statement: postgresql.Insert | sqlite.Insert
    if dialect == "postgresql":
        statement = postgresql.insert(table).on_conflict_do_nothing()
    elif dialect == "sqlite":
        statement = sqlite.insert(table).on_conflict_do_nothing()
    else:
        raise NotImplementedError(f"no insert-or-ignore for dialect {dialect!r}")
    session.execute(statement, list(rows))


def insert_observations(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert :func:`observation_row` rows; frames already stored are skipped."""
    insert_ignoring_duplicates(session, ObservationRow.__table__, rows)  # type: ignore[arg-type]


def insert_actions(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert :func:`action_row` rows; frames already stored are skipped."""
    insert_ignoring_duplicates(session, ActionRow.__table__, rows)  # type: ignore[arg-type]


def insert_events(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert :func:`event_row` rows; events already stored are skipped."""
    insert_ignoring_duplicates(session, EventRow.__table__, rows)  # type: ignore[arg-type]


# --- assets, streams, episodes ------------------------------------------------------------------
def ensure_asset(session: Session, name: str, scene: str | None = None) -> int:
    """The id of asset ``name``, created if new (``scene`` fills a missing scene)."""
    row = {"name": name, "scene": scene, "created": utcnow()}
    insert_ignoring_duplicates(session, Asset.__table__, [row])  # type: ignore[arg-type]
    asset = session.execute(select(Asset).where(Asset.name == name)).scalar_one()
    if scene and not asset.scene:
        asset.scene = scene
    return asset.id


def record_stream(session: Session, asset_id: int, schema: StreamSchema) -> None:
    """Remember ``schema`` for the asset (a schema already known is not stored again)."""
    row = {
        "asset_id": asset_id,
        "name": schema.stream,
        "schema_id": schema.schema_id,
        "kind": schema.kind,
        "dtype": schema.dtype,
        "shape": list(schema.shape),
        "rate_hz": schema.rate_hz,
        "schema": schema_json(schema),
        "first_seen": utcnow(),
        "first_seen_t_ns": schema.t_ns,
    }
    insert_ignoring_duplicates(session, Stream.__table__, [row])  # type: ignore[arg-type]


EPISODE_FIELDS = ("scene", "seed", "controller", "faults", "params", "source", "recording", "notes")


def open_episode(session: Session, asset_id: int, started_t_ns: int, **fields: Any) -> int:
    """Create an episode of the asset and return its id; ``fields`` from :data:`EPISODE_FIELDS`."""
    unknown = set(fields) - set(EPISODE_FIELDS)
    if unknown:
        raise ValueError(f"unknown episode field(s) {sorted(unknown)}; known: {EPISODE_FIELDS}")
    episode = Episode(asset_id=asset_id, started_t_ns=started_t_ns, **fields)
    episode.faults = list(fields.get("faults") or [])
    episode.params = dict(fields.get("params") or {})
    session.add(episode)
    session.flush()
    return episode.id


def update_episode(session: Session, episode_id: int, **fields: Any) -> None:
    """Fill in what was learnt after the episode opened (scene, seed, controller, faults...)."""
    unknown = set(fields) - set(EPISODE_FIELDS)
    if unknown:
        raise ValueError(f"unknown episode field(s) {sorted(unknown)}; known: {EPISODE_FIELDS}")
    if fields:
        session.execute(update(Episode).where(Episode.id == episode_id).values(**fields))


def close_episode(session: Session, episode_id: int, ended_t_ns: int, end_reason: str) -> Episode:
    """Record the end of an episode and the frames actually stored for it."""
    counts = {
        "n_observations": _count(session, ObservationRow.episode_id, episode_id),
        "n_actions": _count(session, ActionRow.episode_id, episode_id),
        "n_events": _count(session, EventRow.episode_id, episode_id),
    }
    session.execute(
        update(Episode)
        .where(Episode.id == episode_id)
        .values(ended_t_ns=ended_t_ns, end_reason=end_reason, **counts)
    )
    return session.get_one(Episode, episode_id, populate_existing=True)


def _count(session: Session, column: Any, episode_id: int) -> int:
    return int(session.execute(select(func.count()).where(column == episode_id)).scalar_one())


def episodes(session: Session, ids: Iterable[int] | None = None, asset: str | None = None) -> list[Episode]:
    """Episodes by id and/or asset name, oldest first."""
    query = select(Episode).order_by(Episode.id)
    if ids is not None:
        query = query.where(Episode.id.in_(list(ids)))
    if asset is not None:
        query = query.join(Asset, Asset.id == Episode.asset_id).where(Asset.name == asset)
    return list(session.execute(query).scalars())
