"""The bus monitor: per-stream rates, gaps and rejects, reported and published on ``stats.``."""

from __future__ import annotations

import threading

import numpy as np
from busutil import TIMEOUT_S, recv_until, vector_schema, wait_for

from bridge import BusStats, Observation, Publisher, Subscriber, encode
from bridge.monitor import BusMonitor


def test_monitor_reports_rates_gaps_and_rejects_and_publishes_them(bus_config, injector):
    schema = vector_schema()
    reports: list[BusStats] = []
    lock = threading.Lock()

    def report(stats: BusStats) -> None:
        with lock:
            reports.append(stats)

    def latest_row():
        with lock:
            for stats in reversed(reports):
                for row in stats.streams:
                    if (row.source, row.topic) == ("inj", schema.data_topic) and row.gaps == 3:
                        return stats, row
        return None

    with (
        Subscriber(bus_config, ("stats.",), name="stats-reader") as reader,
        BusMonitor(bus_config, interval_s=0.2, report=report) as monitor,
    ):
        assert injector.wait_subscribed(b"obs.rig.imu")  # the monitor subscribes to everything
        for seq in (0, 1, 2, 6, 7):  # 3, 4 and 5 never sent: three gaps
            injector.send(encode(Observation("rig", "imu", seq, np.zeros(3, "<f4")), source="inj", seq=seq))
        injector.send([b"obs.rig.imu", b"\xc1 not msgpack"])
        assert wait_for(lambda: latest_row() is not None), f"no report showed the stream: {reports[-1:]}"
        stats, row = latest_row()
        assert row.received == 5 and row.rejected == 0
        assert stats.rejects.get("not_msgpack") == 1
        assert stats.source == "bus-monitor"
        assert all(s.source != "bus-monitor" for s in stats.streams)  # its own traffic is left out
        assert any(r.rate_hz > 0 for s in reports for r in s.streams if r.topic == schema.data_topic), (
            "no report gave the stream a rate"
        )
        published = recv_until(reader, lambda m: isinstance(m, BusStats) and m.source == "bus-monitor")
        assert published is not None and published.topic == "stats.bus-monitor"
        assert monitor.latest is not None
    assert not any(t.name == "bus-monitor" and t.is_alive() for t in threading.enumerate())


def test_monitor_publishes_for_a_late_publisher_stream(bus_config):
    schema = vector_schema(stream="late")
    seen = threading.Event()

    def report(stats: BusStats) -> None:
        if any(s.topic == schema.data_topic and s.received == 10 for s in stats.streams):
            seen.set()

    with BusMonitor(bus_config, interval_s=0.1, report=report), Publisher(bus_config, "late-pub") as pub:
        pub.announce(schema)
        assert pub.wait_subscribed(schema.data_topic, TIMEOUT_S)
        for i in range(10):
            pub.publish(Observation("rig", "late", i, np.zeros(3, "<f4"), schema_id=schema.schema_id))
        assert seen.wait(TIMEOUT_S)
