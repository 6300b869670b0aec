"""Recorded episodes as arrays, for training and evaluation, with their lineage.

:func:`load_episodes` returns one :class:`EpisodeData` per episode: per stream, samples ordered
by time (``t_ns`` (N,), ``seq`` (N,), ``values`` (N, *shape) in the stream's dtype and sensor
units) plus the actions, the events and the metadata (scene, seed, controller, faults, schema).
:func:`export_episodes` writes them to ``.npz`` (numpy, no pickle) or ``.parquet`` (pyarrow);
``docs/store.md`` describes both layouts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from twin.store.models import ActionRow, Asset, Episode, EventRow, ObservationRow, Stream
from twin.store.telemetry import episodes as find_episodes

FORMAT = "jumeau-episodes"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class StreamData:
    """The samples of one stream (or action stream) in one episode, in time order."""

    name: str
    kind: str
    """``vector``, ``image`` or ``action``."""
    t_ns: np.ndarray
    seq: np.ndarray
    values: np.ndarray
    names: tuple[str, ...] = ()
    """Sensor (or actuator) names, one per value (per channel for images)."""
    units: tuple[str, ...] = ()
    schema_id: str = ""
    sources: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        """JSON description (no arrays): what the values mean."""
        return {
            "kind": self.kind,
            "schema_id": self.schema_id,
            "dtype": self.values.dtype.str,
            "shape": list(self.values.shape[1:]),
            "n": len(self.t_ns),
            "names": list(self.names),
            "units": list(self.units),
            "sources": list(self.sources),
        }


@dataclass(frozen=True)
class EpisodeData:
    """One episode's arrays and metadata."""

    id: int
    asset: str
    scene: str | None
    seed: int | None
    controller: str | None
    started_t_ns: int
    ended_t_ns: int | None
    streams: dict[str, StreamData] = field(default_factory=dict)
    actions: dict[str, StreamData] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    recording: str = ""
    end_reason: str | None = None

    def lineage(self) -> dict[str, Any]:
        """Where the data came from and what it means, as JSON."""
        keys = ("id", "asset", "scene", "seed", "controller", "started_t_ns", "ended_t_ns")
        out: dict[str, Any] = {key: getattr(self, key) for key in keys}
        out |= {
            "faults": self.faults,
            "params": self.params,
            "source": self.source,
            "recording": self.recording,
            "end_reason": self.end_reason,
            "streams": {name: data.describe() for name, data in self.streams.items()},
            "actions": {name: data.describe() for name, data in self.actions.items()},
            "events": self.events,
        }
        return out


def _stack(rows: Sequence[Any], what: str) -> np.ndarray:
    first = rows[0]
    for row in rows:
        if row.dtype != first.dtype or list(row.shape) != list(first.shape):
            raise ValueError(
                f"{what}: samples change from {first.dtype}{first.shape} to {row.dtype}{row.shape}; "
                "export the parts separately"
            )
    flat = np.frombuffer(b"".join(row.data for row in rows), dtype=np.dtype(first.dtype))
    return flat.reshape((len(rows), *first.shape))


def _schemas(session: Session, asset_id: int) -> list[Stream]:
    return list(
        session.execute(select(Stream).where(Stream.asset_id == asset_id).order_by(Stream.id)).scalars()
    )


def _stream_data(name: str, kind: str, rows: Sequence[Any], schema: Stream | None, what: str) -> StreamData:
    specs = [] if schema is None else schema.schema["actuators" if kind == "action" else "sensors"]
    return StreamData(
        name=name,
        kind=kind if schema is None or kind == "action" else schema.kind,
        t_ns=np.array([row.t_ns for row in rows], dtype=np.int64),
        seq=np.array([row.seq for row in rows], dtype=np.int64),
        values=_stack(rows, what),
        names=tuple(spec["name"] for spec in specs),
        units=tuple(spec["unit"] for spec in specs),
        schema_id="" if schema is None else schema.schema_id,
        sources=tuple(sorted({row.source for row in rows})),
    )


def load_episode(session: Session, episode: Episode, streams: Iterable[str] | None = None) -> EpisodeData:
    """The arrays of ``episode`` (only ``streams`` if given; actions and events always)."""
    asset = session.get_one(Asset, episode.asset_id)
    schemas = _schemas(session, episode.asset_id)
    wanted = None if streams is None else set(streams)
    query = select(ObservationRow).where(ObservationRow.episode_id == episode.id)
    if wanted is not None:
        query = query.where(ObservationRow.stream.in_(wanted))
    by_stream: dict[str, list[ObservationRow]] = {}
    for row in session.execute(query.order_by(ObservationRow.t_ns, ObservationRow.seq)).scalars():
        by_stream.setdefault(row.stream, []).append(row)
    stream_data = {}
    for name, rows in sorted(by_stream.items()):
        schema = next((s for s in schemas if s.name == name and s.schema_id == rows[0].schema_id), None)
        schema = schema or next((s for s in schemas if s.name == name), None)
        stream_data[name] = _stream_data(name, "vector", rows, schema, f"episode {episode.id} {name}")
    actuated = next((s for s in reversed(schemas) if s.schema.get("actuators")), None)
    by_action: dict[str, list[ActionRow]] = {}
    action_query = select(ActionRow).where(ActionRow.episode_id == episode.id)
    for action in session.execute(action_query.order_by(ActionRow.t_ns, ActionRow.seq)).scalars():
        by_action.setdefault(action.stream, []).append(action)
    actions = {
        name: _stream_data(name, "action", rows, actuated, f"episode {episode.id} action {name}")
        for name, rows in sorted(by_action.items())
    }
    event_query = (
        select(EventRow).where(EventRow.episode_id == episode.id).order_by(EventRow.t_ns, EventRow.id)
    )
    events = [
        {"t_ns": e.t_ns, "category": e.category, "name": e.name, "severity": e.severity, "params": e.params}
        for e in session.execute(event_query).scalars()
    ]
    return EpisodeData(
        id=episode.id,
        asset=asset.name,
        scene=episode.scene,
        seed=episode.seed,
        controller=episode.controller,
        started_t_ns=episode.started_t_ns,
        ended_t_ns=episode.ended_t_ns,
        streams=stream_data,
        actions=actions,
        events=events,
        faults=list(episode.faults),
        params=dict(episode.params),
        source=episode.source,
        recording=episode.recording,
        end_reason=episode.end_reason,
    )


def load_episodes(
    session: Session,
    episode_ids: Iterable[int] | None = None,
    *,
    asset: str | None = None,
    streams: Iterable[str] | None = None,
) -> list[EpisodeData]:
    """Episodes by id and/or asset (all when neither is given), oldest first, as arrays."""
    ids = None if episode_ids is None else list(episode_ids)
    found = find_episodes(session, ids, asset)
    if ids is not None:
        missing = sorted(set(ids) - {episode.id for episode in found})
        if missing:
            raise LookupError(f"no episode(s) with id {missing} in the database")
    wanted = None if streams is None else list(streams)
    return [load_episode(session, episode, wanted) for episode in found]


def lineage(episodes: Sequence[EpisodeData], database: str = "") -> dict[str, Any]:
    """The lineage document stored with an export."""
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "exported": datetime.now(UTC).isoformat(),
        "database": database,
        "episodes": [episode.lineage() for episode in episodes],
    }


def export_episodes(episodes: Sequence[EpisodeData], out: str | Path, *, database: str = "") -> Path:
    """Write ``episodes`` to ``out`` (``.npz`` or ``.parquet``) with their lineage."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = lineage(episodes, database)
    if path.suffix == ".npz":
        from twin.store.export import write_npz

        write_npz(episodes, path, document)
    elif path.suffix == ".parquet":
        from twin.store.export import write_parquet

        write_parquet(episodes, path, document)
    else:
        raise ValueError(f"export file {str(path)!r} must end in .npz or .parquet")
    return path
