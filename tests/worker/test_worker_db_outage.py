"""The database goes away under a running worker process, then comes back.

The worker must keep serving the bus, raise a clear alarm (a log line and an ``error`` Event on
the bus), buffer its writes in a bounded queue, shed only predictions, errors and snapshots (and
count every one), and write everything it kept once the database is back: every prediction it
published is either stored or counted as shed, every event it published is stored.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import pytest
import sqlalchemy as sa
from feedutil import Feed, Listener, cartpole_schema, count, feeding, rows, wait_until
from workerutil import spawn, stop, wait_json

from bridge import Publisher
from twin.store.models import EventRow, PredictionRow

pytestmark = [pytest.mark.fault, pytest.mark.slow]

WORKER_TABLES = "predictions, prediction_errors, latent_states, memories, events"
OUTAGE_S = 3.0


class Outage:
    """Makes the worker's database unusable for writes from :meth:`begin` until :meth:`end`."""

    def __init__(self, url: str) -> None:
        self.url = sa.make_url(url)
        self.started = threading.Event()
        self._end = threading.Event()
        self._thread = threading.Thread(target=self._hold, name="db-outage", daemon=True)

    def begin(self) -> None:
        self._thread.start()
        assert self.started.wait(15), "could not take the database away"

    def end(self) -> None:
        self._end.set()
        self._thread.join(15)

    def _hold(self) -> None:
        if self.url.get_backend_name() == "sqlite":
            self._hold_sqlite_lock()
        else:
            self._hold_postgres_away()

    def _hold_sqlite_lock(self) -> None:
        """An exclusive transaction from another connection: every write of the worker times out."""
        connection = sqlite3.connect(self.url.database, isolation_level=None, timeout=10)
        connection.execute("BEGIN EXCLUSIVE")
        self.started.set()
        self._end.wait(30)
        connection.execute("COMMIT")
        connection.close()

    def _hold_postgres_away(self) -> None:
        """Lock the worker's tables and keep terminating its connections (pg_terminate_backend)."""
        label = self.url.query["application_name"]
        admin = sa.create_engine(
            self.url.difference_update_query(["application_name"]), poolclass=sa.NullPool
        )
        with admin.connect() as connection:
            connection.exec_driver_sql("BEGIN")
            connection.exec_driver_sql(f"LOCK TABLE {WORKER_TABLES} IN ACCESS EXCLUSIVE MODE")
            self.started.set()
            while not self._end.wait(0.1):
                connection.exec_driver_sql("SELECT pg_stat_clear_snapshot()")  # else a stale pid list
                connection.exec_driver_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                    (label,),
                )
            connection.exec_driver_sql("COMMIT")
        admin.dispose()


def test_database_outage_alarms_buffers_sheds_counted_and_flushes(
    worker_db, tiny_model, bus_config, tmp_path
):
    assets = ("pole-a", "pole-b")
    args = [
        "worker",
        "--model",
        str(tiny_model),
        "--db",
        worker_db,
        "--source",
        "twin-1",
        "--calibration-steps",
        "30",
        "--db-lock-timeout",
        "0.2",
        "--write-queue",
        "300",  # small, so that a few seconds of outage overflow it
    ]
    schemas = {asset: cartpole_schema(tiny_model, asset) for asset in assets}
    with Listener(bus_config, ("pred.", "event.")) as heard, Publisher(bus_config, "feed") as pub:
        worker = spawn(args, bus_config, tmp_path)
        try:
            wait_json(worker, "worker_ready")
            feed = Feed(pub, schemas)
            feed.announce()
            assert pub.wait_subscribed("obs.pole-a.", 10)
            with feeding(feed, rate_hz=60):
                wait_until(lambda: count(worker_db, PredictionRow) > 0, 60, "the first stored predictions")
                outage = Outage(worker_db)
                outage.begin()
                try:
                    alarm = heard.wait_for(
                        lambda: heard.events("twin-1", "db_unavailable"), 30, "the db_unavailable alarm"
                    )[0]
                    served = len(heard.predictions())
                    # the worker goes on serving the bus while its database is away
                    heard.wait_for(
                        lambda: len(heard.predictions()) > served + 40, 30, "predictions in the outage"
                    )
                    deadline = time.monotonic() + OUTAGE_S
                    heard.wait_for(lambda: time.monotonic() > deadline, OUTAGE_S + 5, "the outage to last")
                finally:
                    outage.end()
                back = heard.wait_for(
                    lambda: heard.events("twin-1", "db_available"), 60, "the db_available event"
                )[0]
                more = len(heard.predictions())
                heard.wait_for(
                    lambda: len(heard.predictions()) > more + 20, 30, "predictions after the outage"
                )
        finally:
            out, err = stop(worker)
        assert worker.returncode == 0, err[-3000:]

    stopped = json.loads(next(line for line in out.splitlines() if '"worker_stopped"' in line))
    store = stopped["store"]
    assert store["outages"] >= 1 and store["db_errors"] >= 1 and store["lost"] == 0
    assert "ALARM database unavailable" in err
    assert alarm.category == "error" and alarm.severity == "critical" and alarm.topic == "event.twin-1.error"
    assert back.category == "marker" and back.params["outage_s"] > 0

    # bounded buffer: the overflow was shed, counted by table and logged, never silently
    shed = store["shed"]
    assert shed.get("predictions", 0) > 0
    assert set(shed) <= {"predictions", "prediction_errors", "latent_states"}
    assert "shedding" in err

    # everything kept was written once the database came back
    stored = count(worker_db, PredictionRow)
    assert stored + shed["predictions"] == stopped["predictions"]
    published = {(e.topic, e.seq) for e in heard.events() if e.source == "twin-1"}
    stored_events = set(
        rows(worker_db, sa.select(EventRow.topic, EventRow.seq).where(EventRow.source == "twin-1"))
    )
    assert published <= stored_events
    assert {"db_unavailable", "db_available"} <= {
        name for (name,) in rows(worker_db, sa.select(EventRow.name).where(EventRow.source == "twin-1"))
    }
