"""Group bus traffic into episodes: one per asset per recording, split where the data says so.

Conventions (documented in ``docs/store.md``) for publishers such as the simulator:

* ``Event(category="marker", name="episode_start", params={"scene", "seed", "controller", ...})``
  per asset opens a new episode (closing the current one) and gives it its metadata;
* ``Event(category="marker", name="episode_end")`` closes the asset's episode; the next frame
  of that asset opens a new one;
* ``Event(category="fault", ...)`` is appended to the episode's ``faults``;
* a frame whose seq goes backwards on its (source, topic) (seq back to 0: the publisher
  restarted) closes the episode and opens a new one; a heartbeat with ``status="closing"``
  closes the episodes that source started.

Without markers, the first observation or action of an asset opens an episode that lasts until
the recording stops. Events never open an episode; outside one they are stored without it.
The tracker is pure logic (no sockets, no database) and returns operations for the writer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from bridge.messages import Action, Event, Heartbeat, Message, Observation
from twin.store.recording import EpisodeClose, EpisodeOpen, EpisodeUpdate, Frame, Op

log = logging.getLogger(__name__)

META_KEYS = ("scene", "seed", "controller")


@dataclass
class _Open:
    key: int
    asset: str
    source: str
    started_t_ns: int
    last_t_ns: int
    last_seq: dict[tuple[str, str], int] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)


def _metadata(params: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {"params": dict(params)}
    for key in ("scene", "controller"):
        if key in params:
            fields[key] = str(params[key])
    seed = params.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        fields["seed"] = seed
    elif isinstance(seed, str) and seed.lstrip("-").isdigit():
        fields["seed"] = int(seed)
    return fields


class EpisodeTracker:
    """Turns accepted bus messages into writer operations; not thread-safe (receive path only)."""

    def __init__(self, recording: str = "") -> None:
        self.recording = recording
        self._open: dict[str, _Open] = {}
        self._next_key = 0
        self.duplicates = 0
        self.splits: dict[str, int] = {}

    @property
    def open_assets(self) -> list[str]:
        return sorted(self._open)

    def on_message(self, message: Message) -> list[Op]:
        """The operations that record ``message`` (none for messages the store does not keep)."""
        if isinstance(message, (Observation, Action)):
            return self._on_frame(message)
        if isinstance(message, Event):
            return self._on_event(message)
        if isinstance(message, Heartbeat) and message.status == "closing":
            ops: list[Op] = []
            for episode in list(self._open.values()):
                if episode.source == message.source:
                    ops += self._close(episode.asset, "publisher_closed")
            return ops
        return []

    def close_all(self, reason: str = "recording_stopped") -> list[Op]:
        """Close every open episode (end of the recording)."""
        ops: list[Op] = []
        for asset in list(self._open):
            ops += self._close(asset, reason)
        return ops

    # --- rules ---------------------------------------------------------------------------------
    def _on_frame(self, message: Observation | Action) -> list[Op]:
        ops: list[Op] = []
        episode = self._open.get(message.asset)
        stream_key = (message.source, message.topic)
        if episode is not None:
            last = episode.last_seq.get(stream_key)
            if last is not None and message.seq == last:
                self.duplicates += 1
                return []
            if last is not None and message.seq < last:
                log.info(
                    "%s: seq of %s from %r went back from %d to %d (publisher restart): new episode",
                    message.asset,
                    message.topic,
                    message.source,
                    last,
                    message.seq,
                )
                ops += self._close(message.asset, "restart")
                episode = None
        if episode is None:
            episode, opened = self._start(message.asset, message.source, message.t_ns, {})
            ops.append(opened)
        episode.last_seq[stream_key] = message.seq
        episode.last_t_ns = max(episode.last_t_ns, message.t_ns)
        ops.append(Frame(episode.key, message))
        return ops

    def _on_event(self, event: Event) -> list[Op]:
        ops: list[Op] = []
        if event.category == "marker" and event.name == "episode_start":
            if event.asset in self._open:
                ops += self._close(event.asset, "episode_start")
            started, opened = self._start(event.asset, event.source, event.t_ns, _metadata(event.params))
            return [*ops, opened, Frame(started.key, event)]
        episode = self._open.get(event.asset)
        if episode is None:
            return [Frame(None, event)]
        episode.last_t_ns = max(episode.last_t_ns, event.t_ns)
        ops.append(Frame(episode.key, event))
        if event.category == "marker" and event.name == "episode_end":
            ops += self._close(event.asset, "episode_end", event.t_ns)
        elif event.category == "fault":
            fault = {"t_ns": event.t_ns, "name": event.name, "severity": event.severity}
            fault["params"] = dict(event.params)
            episode.faults.append(fault)
            ops.append(EpisodeUpdate(episode.key, {"faults": list(episode.faults)}))
        return ops

    def _start(self, asset: str, source: str, t_ns: int, fields: dict[str, Any]) -> tuple[_Open, Op]:
        key = self._next_key
        self._next_key += 1
        episode = _Open(key=key, asset=asset, source=source, started_t_ns=t_ns, last_t_ns=t_ns)
        self._open[asset] = episode
        fields = {**fields, "source": source, "recording": self.recording}
        return episode, EpisodeOpen(key, asset, t_ns, fields)

    def _close(self, asset: str, reason: str, t_ns: int | None = None) -> list[Op]:
        episode = self._open.pop(asset, None)
        if episode is None:
            return []
        self.splits[reason] = self.splits.get(reason, 0) + 1
        return [EpisodeClose(episode.key, episode.last_t_ns if t_ns is None else t_ns, reason)]
