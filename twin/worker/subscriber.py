"""The worker's bus subscriber: a :class:`bridge.Subscriber` that also remembers what it refused.

The subscriber drops frames that break their schema (NaN where the schema forbids it, a wrong
dtype or shape, a stream with no announced schema) before the worker sees them. The worker
still owes the asset's operators an ``error`` Event for each, so this subclass keeps the last
refusals (reason, detail, topic) for :meth:`twin.worker.loop.TwinWorker.report_bus_rejections`.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from bridge import Subscriber


class ReportingSubscriber(Subscriber):
    """A subscriber whose refusals are queued in :attr:`rejections` (bounded, oldest dropped)."""

    def __init__(self, *args: Any, max_rejections: int = 1_000, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rejections: deque[tuple[str, str, str]] = deque(maxlen=max_rejections)

    def _reject(self, reason: str, detail: str, source: str = "?", topic: str = "?") -> None:
        super()._reject(reason, detail, source, topic)
        self.rejections.append((reason, detail, topic))
