"""``Publisher.publish_vector``: the sim's fast path sends what ``publish(Observation)`` sends."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest
from busutil import TIMEOUT_S, vector_schema

import bridge.publisher as publisher_module
from bridge import Observation, Publisher, Subscriber
from bridge.protocol import encode


def _receive(sub: Subscriber, n: int) -> list:
    got = []
    while len(got) < n:
        message = sub.recv(timeout_s=TIMEOUT_S)
        if message is None:
            break
        got.append(message)
    return got


def test_publish_vector_frames_decode_like_published_observations(bus_config):
    schema = vector_schema(dtype="<f8")
    rows = [np.array([1.5, -2.0, np.nan]), np.array([0.0, 3.25, 7.0]), np.array([-9.5, 1e-9, 2.0])]
    times = [0, 2**32 + 5, 1_763_000_000_123_456_789]  # small, just past 32 bits, a wall clock
    with (
        Subscriber(bus_config, ("obs.rig.",), name="vector-sub") as sub,
        Publisher(bus_config, "vector-pub") as pub,
    ):
        pub.announce(schema)
        assert pub.wait_subscribed(schema.data_topic, TIMEOUT_S)
        for t_ns, values in zip(times, rows, strict=True):
            assert pub.publish_vector(schema, t_ns, values)
        pub.publish(Observation("rig", "imu", 99, rows[0], schema.schema_id))  # seqs are shared
        got = _receive(sub, 4)
    assert [m.seq for m in got] == [0, 1, 2, 3]
    for message, t_ns, values in zip(got, times, rows, strict=False):
        assert isinstance(message, Observation) and message.source == "vector-pub"
        assert (message.asset, message.stream, message.t_ns) == ("rig", "imu", t_ns)
        assert message.schema_id == schema.schema_id
        np.testing.assert_array_equal(message.values, values)


def test_publish_vector_frames_equal_the_encoder_output(bus_config):
    schema = vector_schema(dtype="<f4")
    values = np.array([1.0, 2.0, 3.0], dtype="<f4")
    with Publisher(bus_config, "vector-pub") as pub:
        pub.announce(schema)
        sent: list[list[bytes]] = []
        pub._send = lambda frames, topic: sent.append([bytes(f) for f in frames]) or True  # type: ignore[method-assign]
        pub.publish_vector(schema, 123_456_789_012, values)
    expected = encode(
        Observation("rig", "imu", 123_456_789_012, values, schema.schema_id), source="vector-pub", seq=0
    )
    assert sent[0][0] == expected[0] and sent[0][2] == expected[2]
    # the envelope holds the same map (t_ns/seq may be written as fixed-width uint64)
    assert msgspec.msgpack.decode(sent[0][1]) == msgspec.msgpack.decode(expected[1])


def test_publish_vector_refuses_unannounced_streams_and_wrong_arrays(bus_config):
    schema = vector_schema(dtype="<f8")
    with Publisher(bus_config, "vector-pub") as pub:
        with pytest.raises(ValueError, match=r"announce the schema of obs\.rig\.imu"):
            pub.publish_vector(schema, 0, np.zeros(3))
        pub.announce(schema)
        with pytest.raises(ValueError, match=r"values <f4 \(3,\), schema says <f8 \(3,\)"):
            pub.publish_vector(schema, 0, np.zeros(3, dtype="<f4"))
        with pytest.raises(ValueError, match=r"\(4,\), schema says <f8 \(3,\)"):
            pub.publish_vector(schema, 0, np.zeros(4))
        with pytest.raises(ValueError, match="t_ns=-1"):
            pub.publish_vector(schema, -1, np.zeros(3))
        assert schema.data_topic not in pub.last_seq  # nothing sent, no seq consumed


def test_publish_vector_falls_back_to_publish_when_the_envelope_has_no_fixed_fields(bus_config, monkeypatch):
    """Should the encoder change its integer layout, frames still go out (the slow way)."""
    schema = vector_schema(dtype="<f8")
    with (
        Subscriber(bus_config, ("obs.rig.",), name="vector-sub") as sub,
        Publisher(bus_config, "vector-pub") as pub,
    ):
        pub.announce(schema)
        assert pub.wait_subscribed(schema.data_topic, TIMEOUT_S)
        monkeypatch.setattr(publisher_module, "_T_MARK", 7)  # a small int: msgpack fixint
        assert pub.publish_vector(schema, 5, np.array([1.0, 2.0, 3.0]))
        (message,) = _receive(sub, 1)
    assert (message.t_ns, message.seq) == (5, 0)
    np.testing.assert_array_equal(message.values, [1.0, 2.0, 3.0])
