"""Wire a worker together: engine, migrations, models, restored state, bus sockets, writer.

Start-up is timed for the restart target (restart to first prediction): ``worker_ready`` carries
``startup_s`` (inside :func:`run_worker`) and ``process_s`` (since the process started, imports
included), and a ``worker_serving`` status follows at the first published prediction with
``first_prediction_s`` since the process started.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from bridge import Publisher
from twin.settings import home
from twin.store.engine import describe, make_engine
from twin.store.migrate import upgrade
from twin.store.writer import WriterStats, is_transient
from twin.worker.config import WorkerConfig
from twin.worker.inference import ModelAdapter, adapted_descendants, load_models
from twin.worker.loop import TwinWorker, WorkerStats
from twin.worker.persistence import WorkerWriter, latest_states, pending_predictions
from twin.worker.subscriber import ReportingSubscriber

log = logging.getLogger(__name__)

Status = Callable[[dict[str, Any]], None]
_ALARM_EVERY_S = 10.0


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


def _migrate(engine: Engine) -> BaseException | None:
    """Bring the database to the current schema; the error if it is unreachable (else None).
    Errors that do not mean "unavailable" are raised."""
    try:
        upgrade(engine)
    except Exception as error:
        if not is_transient(error):
            raise
        log.error(
            "ALARM database unavailable at start-up (%s): serving the bus, buffering writes, retrying",
            str(error).splitlines()[0][:200],
        )
        return error
    return None


def _wait_for_database(engine: Engine, stop: threading.Event, error: BaseException) -> BaseException | None:
    """Retry the migrations with back-off (0.5 s doubling to 10 s) until they pass (None) or
    ``stop`` is set (the last error)."""
    delay, waited, last_alarm = 0.5, 0.0, 0.0
    while not stop.wait(delay):
        waited += delay
        try:
            upgrade(engine)
        except Exception as exc:
            if not is_transient(exc):
                raise
            error = exc
            if waited - last_alarm >= _ALARM_EVERY_S:
                last_alarm = waited
                log.error(
                    "ALARM database unavailable for %.0f s and no model file to serve without the registry "
                    "(%s); retrying",
                    waited,
                    str(exc).splitlines()[0][:200],
                )
            delay = min(2 * delay, 10.0)
            continue
        log.warning("database available again after %.1f s at start-up", waited)
        return None
    return error


def offline_refs(refs: tuple[str, ...], models_dir: Path) -> tuple[str, ...]:
    """Checkpoint files for ``refs`` without the registry (the database is unreachable): paths as
    they are; ``name`` / ``name:version`` as ``<models_dir>/<name>-v<version>.pt`` (the file
    names ``twin train`` and adaptation write), the highest version for a bare name; no refs:
    the highest version of every name in ``models_dir``."""
    versions: dict[str, dict[int, Path]] = {}
    for path in models_dir.glob("*-v*.pt"):
        name, _, version = path.stem.rpartition("-v")
        if name and version.isdigit():
            versions.setdefault(name, {})[int(version)] = path
    wanted = refs or tuple(sorted(versions))
    found = []
    for ref in wanted:
        if Path(ref).exists():
            found.append(ref)
            continue
        name, _, version = ref.partition(":")
        files = versions.get(name, {})
        pick = files.get(int(version)) if version.isdigit() else files[max(files)] if files else None
        if pick is None:
            log.error(
                "model %s: the registry is unreachable and no file %s-v*.pt in %s", ref, name, models_dir
            )
            continue
        log.warning("model %s: the registry is unreachable; using the file %s", ref, pick)
        found.append(str(pick))
    return tuple(found)


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
    import torch

    torch.set_num_threads(config.torch_threads)
    engine = make_engine(config.db_url, busy_timeout_ms=round(config.db_lock_timeout_s * 1000))
    down = _migrate(engine)
    models: list[ModelAdapter] = []
    if down is not None:
        models = load_models(offline_refs(config.models, home() / "models"), None)
        if not models:  # nothing to serve without the registry: wait for the database
            down = _wait_for_database(engine, stop, down)
            if down is not None:  # stopped while waiting
                engine.dispose()
                return WorkerStats(store=WriterStats())
    if down is None:
        models = load_models(config.models, engine)
        restored = latest_states(engine, config.stream, config.serves)
        owed = pending_predictions(engine, restored)
    else:
        restored, owed = {}, {}
        log.warning("database unreachable at start-up: serving from checkpoint files, no state restored")
    if not models:
        log.error("no model loaded (refs %s): every stream will be reported as unserved", config.models)
    writer = WorkerWriter(engine, config.writer, prepare=None if down is None else lambda: upgrade(engine))
    if down is not None:
        writer.mark_unavailable(down)
    writer.start()
    adaptation = None
    if config.adapt is not None:
        from twin.worker.adapt import Adaptation

        adaptation = Adaptation(config.adapt, config.db_url, home() / "models")
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
            worker.pending_restored = owed
            if restored and down is None:
                worker.adapted = adapted_descendants(engine, {r.model for r in restored.values()}, models)
            if adaptation is not None:
                worker.adaptation = adaptation
            # the models, torch and SQLAlchemy leave the collector's view: a full collection
            # then walks only what the live loop made (before "ready": the ~0.1 s it takes
            # would otherwise hold the first frames back and coalesce them)
            gc.collect()
            gc.freeze()
            ready_at = time.perf_counter()
            if on_ready is not None:
                on_ready(
                    {
                        "event": "worker_ready",
                        "source": config.source,
                        "db": describe(engine),
                        "db_available": down is None,
                        "models": [m.name for m in models],
                        "topics": list(config.topics),
                        "restorable": sorted(restored),
                        "startup_s": round(time.perf_counter() - started, 3),
                        "process_s": process_age_s(),
                    }
                )
            try:
                stats = worker.run(stop, duration_s)
            finally:
                gc.unfreeze()
    finally:
        if adaptation is not None:
            adaptation.close()
        writer_stats = writer.close()
        engine.dispose()
    stats.store = writer_stats
    if adaptation is not None:
        stats.adapt = adaptation.summary()
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
