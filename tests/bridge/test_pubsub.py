"""Publisher and subscriber in different processes, through a real bus over real sockets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from busutil import TIMEOUT_S, LineReader, image_schema, recv_until, vector_schema, wait_for

from bridge import BusStats, Observation, Publisher, StreamStats, Subscriber

HERE = Path(__file__).parent


def child(script: str, bus_config, *args: str) -> subprocess.Popen:
    """Run ``script`` in a fresh interpreter that finds this bus through the environment."""
    env = {**os.environ, **bus_config.env(), "PYTHONPATH": str(HERE)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=2 * TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"child did not finish in time; stderr:\n{err}")
    return proc.returncode, out, err


PUBLISHER = """
    import sys
    import numpy as np, zmq
    from busutil import vector_schema
    from bridge import BusConfig, Observation, Publisher

    n = int(sys.argv[1])
    schema = vector_schema()
    context = zmq.Context()
    with Publisher(BusConfig.from_env(), "child-pub", context=context) as pub:
        pub.announce(schema)
        if not pub.wait_subscribed(schema.data_topic, 5.0):
            sys.exit("nobody subscribed to " + schema.data_topic)
        for i in range(n):
            values = np.array([i % 7, i, -i], dtype="<f4")
            pub.publish(Observation("rig", "imu", 1000 + i, values, schema_id=schema.schema_id))
        print(pub.sent, pub.dropped, flush=True)
    context.term()
"""


def test_frames_from_another_process_arrive_in_order_without_gaps(bus_config):
    n = 3000
    schema = vector_schema()
    with Subscriber(bus_config, ("obs.rig.",), name="parent-sub") as sub:
        assert sub.ready
        proc = child(PUBLISHER, bus_config, str(n))
        got = []
        while len(got) < n:
            message = sub.recv(timeout_s=TIMEOUT_S)
            if message is None:
                break
            got.append(message)
        rc, out, err = finish(proc)
        assert rc == 0, err
        assert len(got) == n, f"received {len(got)} of {n}; child said {out!r}"
        assert [m.seq for m in got] == list(range(n))
        assert all(isinstance(m, Observation) and m.source == "child-pub" for m in got)
        assert [int(m.values[1]) for m in got] == list(range(n))
        assert [m.t_ns for m in got] == [1000 + i for i in range(n)]
        assert (
            sub.schemas[("rig", "imu")].schema_id == schema.schema_id
        )  # learnt from the stream, validated against
        assert sub.accounting.gaps == 0
        assert sub.accounting.rejected == 0
        sent, dropped = map(int, out.split())
        assert dropped == 0 and sent >= n + 1  # n observations, the announce, heartbeats


SUBSCRIBER = """
    import json, sys
    import numpy as np
    from bridge import BusConfig, Subscriber

    n = int(sys.argv[1])
    with Subscriber(BusConfig.from_env(), ("obs.rig.cam",), name="child-sub") as sub:
        print("ready" if sub.ready else "not-ready", flush=True)
        seqs, intact = [], True
        while len(seqs) < n:
            m = sub.recv(timeout_s=5.0)
            if m is None:
                break
            seqs.append(m.seq)
            expected = np.random.default_rng(m.seq).integers(0, 256, (64, 64, 3), dtype=np.uint8)
            intact = intact and m.values.dtype == np.uint8 and np.array_equal(m.values, expected)
        print(json.dumps({"seqs": seqs, "intact": intact, "gaps": sub.accounting.gaps,
                          "rejects": dict(sub.accounting.rejects)}), flush=True)
"""


def test_images_to_a_subscriber_in_another_process(bus_config):
    n = 300
    schema = image_schema()
    proc = child(SUBSCRIBER, bus_config, str(n))
    lines = LineReader(proc.stdout)
    try:
        assert lines.readline() == "ready\n"
        with Publisher(bus_config, "cam-pub") as pub:
            pub.announce(schema)
            assert pub.wait_subscribed(schema.data_topic, TIMEOUT_S)
            for seq in range(n):
                pixels = np.random.default_rng(seq).integers(0, 256, (64, 64, 3), dtype=np.uint8)
                assert pub.publish(Observation("rig", "cam", seq, pixels, schema_id=schema.schema_id))
            report = lines.readline()
        assert report, "child subscriber printed no report"
        result = json.loads(report)
    finally:
        rc, _, err = finish(proc)
    assert rc == 0, err
    assert result == {"seqs": list(range(n)), "intact": True, "gaps": 0, "rejects": {}}


def test_late_joiner_knows_announced_schemas_at_open_and_validates(bus, bus_config):
    schema = vector_schema()
    with Publisher(bus_config, "early") as pub:
        pub.announce(schema)
        assert wait_for(lambda: schema.topic in bus.schemas)
        with Subscriber(bus_config, ("obs.",), name="late") as sub:
            assert {k: s.schema_id for k, s in sub.schemas.items()} == {("rig", "imu"): schema.schema_id}
            assert pub.wait_subscribed(schema.data_topic, TIMEOUT_S)
            bad = np.array([np.nan, 0, 0], dtype="<f4")  # ax forbids NaN
            pub.publish(Observation("rig", "imu", 1, bad, schema_id=schema.schema_id))
            good = np.array([1, 2, np.nan], dtype="<f4")  # az allows NaN
            pub.publish(Observation("rig", "imu", 2, good, schema_id=schema.schema_id))
            message = recv_until(sub, lambda m: isinstance(m, Observation))
            assert message is not None and message.t_ns == 2
            assert sub.accounting.rejects == {"nan": 1}


def test_late_joiner_fetches_a_schema_it_missed_when_data_arrives(bus, bus_config):
    schema = vector_schema(stream="late")
    with Subscriber(bus_config, ("obs.",), name="early-sub") as sub, Publisher(bus_config, "p") as pub:
        # the bus learns the schema, the subscriber's copy is forgotten: it must ask the bus
        pub.announce(schema)
        assert wait_for(lambda: schema.topic in bus.schemas)
        assert recv_until(sub, lambda m: False, timeout_s=0.2) is None  # consume the announce
        sub._checks.clear()
        pub.publish(Observation("rig", "late", 1, np.zeros(3, "<f4"), schema_id=schema.schema_id))
        message = recv_until(sub, lambda m: isinstance(m, Observation))
        assert message is not None and message.stream == "late"
        assert sub.accounting.rejected == 0


def test_bus_stats_published_without_a_source_arrive(bus_config):
    """Stats and heartbeat topics name their source: the publisher's source must be used."""
    with Subscriber(bus_config, ("stats.",), name="s") as sub, Publisher(bus_config, "mon") as pub:
        assert pub.wait_subscribed("stats.mon", TIMEOUT_S)
        pub.publish(BusStats(t_ns=5, streams=(StreamStats("obs.a.b", "x", 1, 0, 1.0),)))
        message = recv_until(sub, lambda m: isinstance(m, BusStats))
        assert message is not None and message.source == "mon" and message.topic == "stats.mon"
        assert sub.accounting.rejected == 0
