"""Watch the whole bus: per-stream rates, gaps and rejects, logged and published on ``stats.``.

Used by ``twin bus --stats`` (inside the bus process) and ``twin stats`` (against a running bus).
It is an ordinary subscriber to every topic, so it costs the bus nothing when not running.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from bridge.config import LATEST_HWM, BusConfig
from bridge.messages import BusStats
from bridge.publisher import Publisher
from bridge.stats import format_stats
from bridge.subscriber import Subscriber

log = logging.getLogger(__name__)


class BusMonitor:
    """Subscribe to everything; every ``interval_s`` hand a :class:`BusStats` to ``report`` and
    publish it on ``stats.<source>``. Runs in its own thread between ``start()`` and ``stop()``."""

    def __init__(
        self,
        config: BusConfig,
        *,
        interval_s: float = 2.0,
        source: str = "bus-monitor",
        report: Callable[[BusStats], None] | None = None,
    ) -> None:
        self.config = config
        self.interval_s = interval_s
        self.source = source
        self.report = report or (lambda stats: log.info("bus stats\n%s", format_stats(stats)))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.latest: BusStats | None = None

    def start(self) -> BusMonitor:
        self._thread = threading.Thread(target=self._run, name="bus-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def __enter__(self) -> BusMonitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        with (
            Subscriber(self.config, ("",), name=self.source, require_schema=False) as sub,
            Publisher(self.config, self.source, role="monitor", hwm=LATEST_HWM) as pub,
        ):
            next_report = time.monotonic() + self.interval_s
            while not self._stop.is_set():
                sub.recv(timeout_s=min(0.2, max(0.0, next_report - time.monotonic())))
                sub.drain()
                if time.monotonic() >= next_report:
                    next_report += self.interval_s
                    stats = sub.accounting.snapshot(source=self.source)
                    stats = BusStats(
                        t_ns=stats.t_ns,
                        streams=tuple(s for s in stats.streams if s.source != self.source),
                        rejects=stats.rejects,
                        source=self.source,
                    )
                    self.latest = stats
                    self.report(stats)
                    pub.publish(stats)
