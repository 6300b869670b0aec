"""What a recorder asks the store to do, and how a batch of it becomes one transaction.

The receive path works with small episode *keys* (its own counters) and never waits for the
database; :func:`apply_ops` turns keys into episode ids as it creates the rows. The id maps are
passed in and updated in place, and the caller keeps the updated maps only once the transaction
commits, so a batch that failed can be retried as a whole (frames are inserted with
``ON CONFLICT DO NOTHING``, so a retry never duplicates them).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from bridge.messages import Action, Event, Observation, StreamSchema
from twin.store import telemetry


@dataclass(frozen=True, slots=True)
class SchemaSeen:
    """A stream schema to remember (stored once per asset, stream and schema id)."""

    schema: StreamSchema


@dataclass(frozen=True, slots=True)
class EpisodeOpen:
    """Start episode ``key`` of ``asset``; ``fields`` as :data:`telemetry.EPISODE_FIELDS`."""

    key: int
    asset: str
    started_t_ns: int
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EpisodeUpdate:
    """Metadata learnt after the start (faults so far, scene, seed...)."""

    key: int
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class EpisodeClose:
    """End episode ``key`` at ``ended_t_ns`` because of ``reason``."""

    key: int
    ended_t_ns: int
    reason: str


@dataclass(frozen=True, slots=True)
class Frame:
    """A telemetry message of episode ``key`` (None: an event outside any episode)."""

    key: int | None
    message: Observation | Action | Event


Op = SchemaSeen | EpisodeOpen | EpisodeUpdate | EpisodeClose | Frame


def apply_ops(
    session: Session,
    ops: Sequence[Op],
    episode_ids: dict[int, int],
    asset_ids: dict[str, int],
) -> tuple[Counter[str], list[tuple[int, str]]]:
    """Write ``ops`` in ``session`` (no commit); return rows written by kind and closed episodes.

    Frames are collected and inserted in one batched statement per table, before episode ends
    are recorded, so the counts stored with a closed episode include the batch's frames.
    """

    def asset_id(name: str) -> int:
        if name not in asset_ids:
            asset_ids[name] = telemetry.ensure_asset(session, name)
        return asset_ids[name]

    observations: list[dict[str, Any]] = []
    actions: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    closes: list[EpisodeClose] = []
    for op in ops:
        if isinstance(op, Frame):
            message = op.message
            episode_id = None if op.key is None else episode_ids[op.key]
            if isinstance(message, Observation):
                observations.append(telemetry.observation_row(episode_id, message))  # type: ignore[arg-type]
            elif isinstance(message, Action):
                actions.append(telemetry.action_row(episode_id, message))  # type: ignore[arg-type]
            else:
                events.append(telemetry.event_row(message, episode_id))
        elif isinstance(op, EpisodeOpen):
            fields = dict(op.fields)
            owner = asset_id(op.asset)
            if fields.get("scene"):
                telemetry.ensure_asset(session, op.asset, scene=fields["scene"])
            episode_ids[op.key] = telemetry.open_episode(session, owner, op.started_t_ns, **fields)
        elif isinstance(op, EpisodeUpdate):
            telemetry.update_episode(session, episode_ids[op.key], **op.fields)
        elif isinstance(op, EpisodeClose):
            closes.append(op)
        else:
            telemetry.record_stream(session, asset_id(op.schema.asset), op.schema)
    telemetry.insert_observations(session, observations)
    telemetry.insert_actions(session, actions)
    telemetry.insert_events(session, events)
    closed = []
    for close in closes:
        episode_id = episode_ids[close.key]
        telemetry.close_episode(session, episode_id, close.ended_t_ns, close.reason)
        closed.append((episode_id, close.reason))
    written = Counter(observations=len(observations), actions=len(actions), events=len(events))
    return written, closed
