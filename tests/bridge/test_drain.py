"""The batched receive path (``drain``) gives the same verdicts and accounting as ``recv``."""

from __future__ import annotations

import time

import numpy as np

from bridge import Heartbeat, Observation, Publisher, StreamSchema, Subscriber
from tests.bridge.busutil import vector_schema, wait_for


def _mixed_values() -> list[np.ndarray]:
    """Good, out-of-range, NaN-forbidden, NaN-allowed and wrong-shape values, interleaved."""
    good = np.array([1.0, 2.0, 3.0], np.float32)
    rows = []
    for i in range(60):
        kind = i % 6
        if kind == 1:
            rows.append(np.array([50.0, 0.0, 0.0], np.float32))  # ax out of range: delivered
        elif kind == 2:
            rows.append(np.array([np.nan, 0.0, 0.0], np.float32))  # ax forbids NaN: rejected
        elif kind == 3:
            rows.append(np.array([0.0, 0.0, np.nan], np.float32))  # az allows NaN: delivered
        elif kind == 4:
            rows.append(np.array([0.0, 0.0], np.float32))  # wrong shape: rejected
        else:
            rows.append(good + np.float32(i * 0.01))
    return rows


def test_drain_and_recv_agree_on_every_verdict(bus_config):
    schema = vector_schema()
    values = _mixed_values()
    with (
        Publisher(bus_config, "mixer") as pub,
        Subscriber(bus_config, ("obs.rig.",), name="one-by-one") as one,
        Subscriber(bus_config, ("obs.rig.",), name="batched") as batched,
    ):
        pub.announce(schema)
        assert wait_for(lambda: one.fetch_schemas() > 0 and batched.fetch_schemas() > 0)
        assert pub.wait_subscribed(schema.data_topic, 5.0)
        for row in values:
            pub.publish(Observation("rig", "imu", time.time_ns(), row, schema.schema_id))
        pub.heartbeat()

        by_recv: list[Observation] = []
        while (message := one.recv(timeout_s=1.0)) is not None:
            if isinstance(message, Observation):
                by_recv.append(message)
        by_drain: list[Observation] = []
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and len(by_drain) < len(by_recv):
            by_drain += [m for m in batched.drain() if isinstance(m, Observation)]
            batched.socket.poll(50)  # wait for more frames without consuming any
        by_drain += [m for m in batched.drain() if isinstance(m, Observation)]

    assert [m.seq for m in by_drain] == [m.seq for m in by_recv]
    assert len(by_recv) == 40  # 60 sent, 10 NaN-forbidden and 10 wrong-shape rejected
    assert (
        dict(one.accounting.rejects) == dict(batched.accounting.rejects) == {"nan": 10, "schema_mismatch": 10}
    )
    snap_one, snap_batched = one.accounting.snapshot(), batched.accounting.snapshot()
    obs_one = next(s for s in snap_one.streams if s.topic == schema.data_topic)
    obs_batched = next(s for s in snap_batched.streams if s.topic == schema.data_topic)
    assert (obs_one.received, obs_one.out_of_range, obs_one.gaps) == (40, 10, 0)
    assert (obs_batched.received, obs_batched.out_of_range, obs_batched.gaps) == (40, 10, 0)


def test_many_schemas_are_reannounced_round_robin_not_in_bursts(bus_config):
    """20 streams: each heartbeat re-announces at most 8 schemas, and every one comes round."""
    schemas = [vector_schema(asset=f"a{i}") for i in range(20)]
    with (
        Publisher(bus_config, "many") as pub,
        Subscriber(bus_config, ("schema.", "hb."), name="watch") as sub,
    ):
        assert pub.wait_subscribed("schema.", 5.0)
        for schema in schemas:
            pub.announce(schema)
        per_beat: list[set[str]] = []
        for _ in range(5):
            pub.heartbeat()
            topics: set[str] = set()
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline:
                message = sub.recv(timeout_s=1.0)
                if isinstance(message, Heartbeat) and message.source == "many":
                    break
                if isinstance(message, StreamSchema):
                    topics.add(message.topic)
            per_beat.append(topics)
    # the first two batches also hold the initial announces (the first publish beats at once)
    assert all(len(t) <= 8 for t in per_beat[2:]), [len(t) for t in per_beat]
    assert set().union(*per_beat[2:]) == {s.topic for s in schemas}
