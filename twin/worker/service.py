"""Wire a worker together: engine, migrations, models, restored state, bus sockets, writer.

Start-up is timed for the restart target (restart to first prediction): ``worker_ready`` carries
``startup_s`` (inside :func:`run_worker`) and ``process_s`` (since the process started, imports
included), and a ``worker_serving`` status follows at the first published prediction with
``first_prediction_s`` since the process started.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from bridge import Publisher
from twin.store.engine import describe, make_engine
from twin.store.migrate import upgrade
from twin.worker.config import WorkerConfig
from twin.worker.inference import load_models
from twin.worker.loop import TwinWorker, WorkerStats
from twin.worker.persistence import WorkerWriter, latest_states
from twin.worker.subscriber import ReportingSubscriber

log = logging.getLogger(__name__)

Status = Callable[[dict[str, Any]], None]


def process_age_s() -> float | None:
    """Seconds since this process started (Linux ``/proc``; None elsewhere), to 10 ms."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime", encoding="ascii") as uptime:
            up = float(uptime.read().split()[0])
        return round(up - int(fields[19]) / os.sysconf("SC_CLK_TCK"), 3)
    except (OSError, ValueError, IndexError):
        return None


def run_worker(
    config: WorkerConfig,
    stop: threading.Event,
    on_ready: Status | None = None,
    duration_s: float | None = None,
    on_serving: Status | None = None,
) -> WorkerStats:
    """Run until ``stop`` (or ``duration_s``); flush the store before returning.

    ``on_ready`` gets the ``worker_ready`` status once the sockets are up, ``on_serving`` the
    ``worker_serving`` status at the first published prediction.
    """
    started = time.perf_counter()
    engine = make_engine(config.db_url, busy_timeout_ms=round(config.db_lock_timeout_s * 1000))
    upgrade(engine)
    models = load_models(config.models, engine)
    if not models:
        log.error("no model loaded (refs %s): every stream will be reported as unserved", config.models)
    restored = latest_states(engine, config.stream, config.assets)
    writer = WorkerWriter(engine, config.writer).start()
    try:
        with (
            ReportingSubscriber(config.bus, config.topics, name=config.source) as subscriber,
            Publisher(config.bus, config.source, role="worker") as publisher,
        ):

            def serving(asset: str) -> None:
                status = {
                    "event": "worker_serving",
                    "asset": asset,
                    "restored": worker.stats.restored,
                    "since_ready_s": round(time.perf_counter() - ready_at, 3),
                    "first_prediction_s": process_age_s(),
                }
                log.info("first prediction (%s): %s", asset, status)
                if on_serving is not None:
                    on_serving(status)

            worker = TwinWorker(config, subscriber, publisher, writer, models, restored, serving)
            ready_at = time.perf_counter()
            if on_ready is not None:
                on_ready(
                    {
                        "event": "worker_ready",
                        "source": config.source,
                        "db": describe(engine),
                        "models": [m.name for m in models],
                        "topics": list(config.topics),
                        "restorable": sorted(restored),
                        "startup_s": round(time.perf_counter() - started, 3),
                        "process_s": process_age_s(),
                    }
                )
            stats = worker.run(stop, duration_s)
    finally:
        writer_stats = writer.close()
        engine.dispose()
    stats.store = writer_stats
    log.info(
        "worker stopped: %d observations, %d steps in %d batches, %d predictions, %d anomalies; "
        "store wrote %s, shed %s, lost %d, %d outage(s)",
        stats.observations,
        stats.steps,
        stats.batches,
        stats.predictions,
        stats.anomalies,
        dict(writer_stats.written),
        dict(writer_stats.shed),
        writer_stats.lost,
        writer_stats.outages,
    )
    return stats
