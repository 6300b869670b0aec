"""The recorder over a real bus and a real database: exact frames, bad frames, database outages."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session
from storeutil import ASSET, publish_episode, stored, vector_schema, wait_until

from bridge import BusConfig, Observation, Publisher
from twin.recorder import Recorder, RecorderConfig, RecordingSummary
from twin.store.engine import make_engine
from twin.store.migrate import upgrade
from twin.store.models import Episode, ObservationRow, Stream
from twin.store.writer import BatchWriter, WriterConfig


@contextmanager
def recording(
    bus_config: BusConfig, engine: sa.Engine, **writer_options: object
) -> Iterator[tuple[Recorder, dict[str, RecordingSummary]]]:
    """A recorder running in a thread; stopped (and flushed) when the block ends."""
    writer = BatchWriter(engine, WriterConfig(**writer_options)).start()  # type: ignore[arg-type]
    recorder = Recorder(bus_config, writer, RecorderConfig())
    stop = threading.Event()
    result: dict[str, RecordingSummary] = {}
    thread = threading.Thread(target=lambda: result.update(summary=recorder.run(stop)), daemon=True)
    thread.start()
    assert recorder.ready.wait(10)
    try:
        yield recorder, result
    finally:
        stop.set()
        thread.join(60)
        assert not thread.is_alive()


def received_all(recorder: Recorder, counts: dict[str, int]) -> Callable[[], bool]:
    return lambda: all(recorder.received[kind] >= n for kind, n in counts.items())


def test_recording_stores_exactly_the_frames_published(engine: sa.Engine, bus_config: BusConfig) -> None:
    with recording(bus_config, engine, batch_size=100) as (recorder, result):
        with Publisher(bus_config, "sim") as pub:
            counts = publish_episode(pub, 400)
        wait_until(received_all(recorder, counts))
    summary = result["summary"]
    assert summary.complete and summary.bus_gaps == 0
    assert stored(engine) == counts
    with Session(engine) as session:
        episode = session.execute(sa.select(Episode)).scalar_one()
        assert (episode.scene, episode.seed, episode.controller) == ("pendulum-v1", 3, "random")
        assert [f["name"] for f in episode.faults] == ["sensor_stuck"]
        assert (episode.n_observations, episode.n_actions, episode.n_events) == (
            counts["obs"],
            counts["act"],
            counts["event"],
        )
        assert episode.ended_t_ns is not None and episode.end_reason == "publisher_closed"
        seqs = session.execute(
            sa.select(ObservationRow.seq).where(ObservationRow.stream == "state").order_by(ObservationRow.seq)
        ).scalars()
        assert list(seqs) == list(range(400))
        assert {s.name for s in session.execute(sa.select(Stream)).scalars()} == {"state", "camera"}
    assert summary.episodes == [episode.id]


def test_recorder_survives_bad_frames(engine: sa.Engine, bus_config: BusConfig) -> None:
    def garbage(step: int) -> None:
        if step % 100 == 7:
            pub.socket.send_multipart([f"obs.{ASSET}.state".encode(), b"\xc1 not msgpack"])
            pub.socket.send_multipart([f"obs.{ASSET}.state".encode()])

    with recording(bus_config, engine) as (recorder, result), Publisher(bus_config, "sim") as pub:
        counts = publish_episode(pub, 300, during=garbage)
        wrong_shape = Observation(ASSET, "state", time.time_ns(), np.zeros(5), vector_schema().schema_id)
        pub.publish(wrong_shape)  # rejected by the subscriber's schema check
        pub.publish(Observation(ASSET, "state", time.time_ns(), np.zeros(2), vector_schema().schema_id))
        counts["obs"] += 1
        wait_until(received_all(recorder, counts))
    summary = result["summary"]
    assert summary.bus_rejects == {"not_msgpack": 3, "frame_count": 3, "schema_mismatch": 1}
    assert summary.complete
    assert stored(engine) == counts


def _hold_sqlite_lock(path: str, seconds: float) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("BEGIN EXCLUSIVE")
    time.sleep(seconds)
    connection.execute("COMMIT")
    connection.close()


def _hold_postgres_outage(store_url: str, seconds: float) -> None:
    """Lock the telemetry tables and terminate the recorder's connections, then let go."""
    url = sa.make_url(store_url)
    schema = url.query["application_name"]
    admin = sa.create_engine(url.difference_update_query(["application_name"]), poolclass=sa.NullPool)
    with admin.connect() as connection:
        connection.exec_driver_sql("BEGIN")
        connection.exec_driver_sql("LOCK TABLE observations, actions, events IN ACCESS EXCLUSIVE MODE")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            connection.exec_driver_sql("SELECT pg_stat_clear_snapshot()")  # else a stale pid list
            connection.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                (schema,),
            )
            time.sleep(0.1)
        connection.exec_driver_sql("COMMIT")
    admin.dispose()


def test_database_going_away_is_buffered_and_retried(store_url: str, bus_config: BusConfig) -> None:
    engine = make_engine(store_url, busy_timeout_ms=50)
    upgrade(engine)
    if engine.dialect.name == "sqlite":
        outage = threading.Thread(target=_hold_sqlite_lock, args=(engine.url.database, 1.5))
    else:
        outage = threading.Thread(target=_hold_postgres_outage, args=(store_url, 1.5))
    try:
        with recording(bus_config, engine, batch_size=50, retry_initial_s=0.05, retry_max_s=0.2) as (
            recorder,
            result,
        ):
            with Publisher(bus_config, "sim") as pub:
                counts = publish_episode(pub, 100)
                wait_until(received_all(recorder, counts))
                outage.start()
                time.sleep(0.3)  # the outage is on: what follows must be buffered
                more = publish_episode(pub, 100)
            counts = {kind: counts[kind] + more[kind] for kind in counts}
            wait_until(received_all(recorder, counts))
            outage.join()
        summary = result["summary"]
        assert summary.db_errors >= 1 and summary.outages >= 1
        assert summary.complete and summary.lost == 0
        assert stored(engine) == counts
    finally:
        engine.dispose()


def test_asset_filter_records_only_those_assets(engine: sa.Engine, bus_config: BusConfig) -> None:
    writer = BatchWriter(engine).start()
    recorder = Recorder(bus_config, writer, RecorderConfig(assets=("other",)))
    stop = threading.Event()
    thread = threading.Thread(target=recorder.run, args=(stop,), daemon=True)
    thread.start()
    assert recorder.ready.wait(10)
    with Publisher(bus_config, "sim") as pub:
        other = vector_schema(asset="other")
        pub.announce(other)
        pub.announce(vector_schema())
        assert pub.wait_subscribed("obs.other.", 5)
        for _ in range(20):
            pub.publish(Observation(ASSET, "state", time.time_ns(), np.zeros(2), vector_schema().schema_id))
            pub.publish(Observation("other", "state", time.time_ns(), np.zeros(2), other.schema_id))
        wait_until(lambda: recorder.received["obs"] >= 20)
    stop.set()
    thread.join(30)
    assert stored(engine) == {"obs": 20, "act": 0, "event": 0}
    with Session(engine) as session:
        assert {s.name for s in session.execute(sa.select(Stream)).scalars()} == {"state"}
        assert session.execute(sa.select(Episode.asset_id)).scalars().all() == [
            session.scalar(sa.text("SELECT id FROM assets WHERE name = 'other'"))
        ]
