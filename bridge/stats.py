"""Loss and reject accounting for subscribers: per (source, topic) counts, gaps and rates.

Sequence numbers are per publisher and per topic, starting at 0. A subscriber that joins late
starts counting from the first seq it sees; afterwards every skipped seq is a dropped frame.
A heartbeat's ``last_seq`` reveals frames dropped at the end of a burst (no later frame would
otherwise show the gap). A seq of 0 after a higher one means the publisher restarted.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from bridge.messages import BusStats, StreamStats

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Counter:
    received: int = 0
    gaps: int = 0
    rejected: int = 0
    out_of_range: int = 0
    last_seq: int = -1
    last_t_ns: int = 0
    rate_count: int = 0
    rate_hz: float = 0.0


@dataclass
class StreamAccounting:
    """Mutable counters owned by one subscriber; :meth:`snapshot` gives an immutable view."""

    streams: dict[tuple[str, str], _Counter] = field(default_factory=dict)
    rejects: Counter[str] = field(default_factory=Counter)
    restarts: int = 0
    duplicates: int = 0
    _rate_t: float = field(default_factory=time.monotonic)

    def _counter(self, source: str, topic: str) -> _Counter:
        key = (source, topic)
        counter = self.streams.get(key)
        if counter is None:
            counter = self.streams[key] = _Counter()
        return counter

    def accept(self, source: str, topic: str, seq: int, t_ns: int, *, delivered: bool = True) -> int:
        """Count one arrived frame (``delivered=False``: it arrived but was rejected, so it
        advances the sequence without counting as received); return how many were lost before it.
        """
        counter = self._counter(source, topic)
        counter.received += delivered
        counter.last_t_ns = t_ns
        last = counter.last_seq
        lost = 0
        if last >= 0:
            if seq > last + 1:
                lost = seq - last - 1
                counter.gaps += lost
            elif seq <= last:
                if seq == 0:
                    self.restarts += 1
                    log.info("source %r restarted topic %r (seq back to 0)", source, topic)
                else:
                    self.duplicates += 1
        counter.last_seq = seq
        return lost

    def heartbeat(self, source: str, last_seq: dict[str, int]) -> int:
        """Count frames the heartbeat says were sent but never arrived; return that count."""
        lost = 0
        for topic, sent in last_seq.items():
            counter = self.streams.get((source, topic))
            if counter is not None and counter.last_seq >= 0 and sent > counter.last_seq:
                lost += sent - counter.last_seq
                counter.gaps += sent - counter.last_seq
                counter.last_seq = sent
        return lost

    def reject(self, reason: str, source: str = "?", topic: str = "?") -> None:
        self.rejects[reason] += 1
        if source != "?" and topic != "?":
            self._counter(source, topic).rejected += 1

    def out_of_range(self, source: str, topic: str) -> None:
        self._counter(source, topic).out_of_range += 1

    @property
    def received(self) -> int:
        return sum(c.received for c in self.streams.values())

    @property
    def gaps(self) -> int:
        return sum(c.gaps for c in self.streams.values())

    @property
    def rejected(self) -> int:
        return sum(self.rejects.values())

    def snapshot(self, t_ns: int | None = None, source: str = "") -> BusStats:
        """Immutable per-stream view; rates are over the time since the previous snapshot."""
        now = time.monotonic()
        elapsed = max(now - self._rate_t, 1e-9)
        self._rate_t = now
        rows = []
        for (src, topic), c in sorted(self.streams.items()):
            c.rate_hz = (c.received - c.rate_count) / elapsed
            c.rate_count = c.received
            rows.append(
                StreamStats(
                    topic=topic,
                    source=src,
                    received=c.received,
                    gaps=c.gaps,
                    rate_hz=c.rate_hz,
                    rejected=c.rejected,
                    out_of_range=c.out_of_range,
                    last_t_ns=c.last_t_ns,
                )
            )
        return BusStats(
            t_ns=time.time_ns() if t_ns is None else t_ns,
            streams=tuple(rows),
            rejects=dict(self.rejects),
            source=source,
        )


def format_stats(stats: BusStats) -> str:
    """A readable table of a stats snapshot (for logs and ``twin bus --stats``)."""
    header = f"{'topic':<40} {'source':<16} {'rate/s':>9} {'recv':>9} {'gaps':>7} {'rej':>5} {'oor':>5}"
    lines = [header, "-" * len(header)]
    for s in stats.streams:
        lines.append(
            f"{s.topic:<40.40} {s.source:<16.16} {s.rate_hz:>9.1f} {s.received:>9d} "
            f"{s.gaps:>7d} {s.rejected:>5d} {s.out_of_range:>5d}"
        )
    if stats.rejects:
        lines.append("rejects: " + ", ".join(f"{k}={v}" for k, v in sorted(stats.rejects.items())))
    return "\n".join(lines)
