"""Wire a worker together: engine, migrations, models, restored state, bus sockets, writer."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from bridge import Publisher, Subscriber
from twin.store.engine import describe, make_engine
from twin.store.migrate import upgrade
from twin.worker.config import WorkerConfig
from twin.worker.inference import load_models
from twin.worker.loop import TwinWorker, WorkerStats
from twin.worker.persistence import WorkerWriter, latest_states

log = logging.getLogger(__name__)


def run_worker(
    config: WorkerConfig,
    stop: threading.Event,
    on_ready: Callable[[dict[str, Any]], None] | None = None,
    duration_s: float | None = None,
) -> WorkerStats:
    """Run until ``stop`` (or ``duration_s``); flush the store before returning."""
    started = time.perf_counter()
    engine = make_engine(config.db_url)
    upgrade(engine)
    models = load_models(config.models, engine)
    if not models:
        log.error("no model loaded (refs %s): every stream will be reported as unserved", config.models)
    restored = latest_states(engine, config.stream, config.assets)
    writer = WorkerWriter(engine, config.writer).start()
    try:
        with (
            Subscriber(config.bus, config.topics, name=config.source) as subscriber,
            Publisher(config.bus, config.source, role="worker") as publisher,
        ):
            worker = TwinWorker(config, subscriber, publisher, writer, models, restored)
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
                    }
                )
            stats = worker.run(stop, duration_s)
    finally:
        writer_stats = writer.close()
        engine.dispose()
    log.info(
        "worker stopped: %d observations, %d steps in %d batches, %d predictions, %d anomalies; "
        "store wrote %s, shed %s, lost %d",
        stats.observations,
        stats.steps,
        stats.batches,
        stats.predictions,
        stats.anomalies,
        dict(writer_stats.written),
        dict(writer_stats.shed),
        writer_stats.lost,
    )
    return stats
