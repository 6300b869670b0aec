"""The database goes away under a running worker process, then comes back.

The worker must keep serving the bus, raise a clear alarm (a log line and an ``error`` Event on
the bus), buffer its writes in a bounded queue, shed only predictions, errors and snapshots (and
count every one), and write everything it kept once the database is back: every prediction it
published is either stored or counted as shed, every event it published is stored.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from dbutil import postgres_schema
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


class Gate:
    """A TCP gate on a free loopback port in front of PostgreSQL: until :meth:`end` it accepts
    every connection and closes it at once (the server is "down"); afterwards it forwards each
    new connection to the server."""

    def __init__(self, url: str) -> None:
        real = sa.make_url(url)
        self.target = (real.host or "127.0.0.1", real.port or 5432)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.1)
        self.url = real.set(host="127.0.0.1", port=self.server.getsockname()[1]).render_as_string(
            hide_password=False
        )
        self.opened = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="db-gate", daemon=True)

    def begin(self) -> None:
        self._thread.start()

    def end(self) -> None:
        self.opened.set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.server.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            if not self.opened.is_set():
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def absent_db(request: pytest.FixtureRequest, tmp_path) -> Iterator[tuple[str, str, Any]]:
    """(URL the worker is given, URL the test reads, what keeps it away until ``end()``): a new
    SQLite file held by an exclusive transaction, or a PostgreSQL schema behind a closed gate."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'twin.sqlite'}"
        yield url, url, Outage(url)
        return
    with postgres_schema(request.getfixturevalue("postgres_url")) as url:
        gate = Gate(url)
        try:
            yield gate.url, url, gate
        finally:
            gate.close()


def test_database_unreachable_at_start_up_serves_alarms_buffers_and_flushes(
    absent_db, tiny_model, bus_config, tmp_path
):
    """The worker starts while its database is away (migrations cannot run) and without
    ``--model``: it loads the newest checkpoint file of the models folder instead of the
    registry, raises the alarm, serves the bus, and once the database appears it migrates it and
    writes everything it buffered."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(tiny_model, models / "cartpole-tiny-v1.pt")
    worker_url, url, outage = absent_db
    assets = ("pole-a", "pole-b")
    args = [
        "worker",
        "--db",
        worker_url,
        "--source",
        "twin-1",
        "--calibration-steps",
        "30",
        "--db-lock-timeout",
        "0.2",
    ]
    schemas = {asset: cartpole_schema(tiny_model, asset) for asset in assets}
    outage.begin()
    with Listener(bus_config, ("pred.", "event.")) as heard, Publisher(bus_config, "feed") as pub:
        worker = spawn(args, bus_config, tmp_path)
        try:
            try:
                ready = wait_json(worker, "worker_ready")
                assert ready["db_available"] is False and ready["models"] == ["cartpole-tiny:1"]
                feed = Feed(pub, schemas)
                feed.announce()
                assert pub.wait_subscribed("obs.pole-a.", 10)
                with feeding(feed, rate_hz=60):
                    alarm = heard.wait_for(
                        lambda: heard.events("twin-1", "db_unavailable"), 30, "the db_unavailable alarm"
                    )[0]
                    heard.wait_for(
                        lambda: len(heard.predictions()) > 60, 60, "predictions without a database"
                    )
                    outage.end()
                    back = heard.wait_for(
                        lambda: heard.events("twin-1", "db_available"), 60, "the db_available event"
                    )[0]
                    more = len(heard.predictions())
                    heard.wait_for(lambda: len(heard.predictions()) > more + 20, 30, "predictions afterwards")
            finally:
                outage.end()
        finally:
            out, err = stop(worker)
        assert worker.returncode == 0, err[-3000:]

    stopped = json.loads(next(line for line in out.splitlines() if '"worker_stopped"' in line))
    store = stopped["store"]
    assert store["outages"] == 1 and store["lost"] == 0, store
    assert "ALARM database unavailable at start-up" in err
    assert "using the file" in err
    assert alarm.category == "error" and alarm.severity == "critical"
    assert back.category == "marker" and back.params["outage_s"] > 0

    # migrated once it appeared, and everything kept was written
    shed = store["shed"].get("predictions", 0)
    assert count(url, PredictionRow) + shed == stopped["predictions"]
    published = {(e.topic, e.seq) for e in heard.events() if e.source == "twin-1"}
    stored_events = set(rows(url, sa.select(EventRow.topic, EventRow.seq).where(EventRow.source == "twin-1")))
    assert published <= stored_events
