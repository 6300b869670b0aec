"""Bad frames from a raw socket: each is rejected with its reason, logged, counted, and the next
good frame still arrives."""

from __future__ import annotations

import logging

import msgpack
import numpy as np
import pytest
from busutil import TIMEOUT_S, recv_until, vector_schema, wait_for

from bridge import ControlClient, Observation, Publisher, StreamSchema, Subscriber, encode

SCHEMA = vector_schema()
TOPIC = b"obs.rig.imu"


def obs_frames(
    values=None, *, stream: str = "imu", seq: int = 99, schema_id: str | None = None
) -> list[bytes]:
    values = np.zeros(3, "<f4") if values is None else values
    obs = Observation(
        "rig", stream, 1, values, schema_id=SCHEMA.schema_id if schema_id is None else schema_id
    )
    return encode(obs, source="inj", seq=seq)


def envelope_changed(**changes) -> list[bytes]:
    frames = obs_frames()
    env = msgpack.unpackb(frames[1])
    env.update(changes)
    return [frames[0], msgpack.packb(env), *frames[2:]]


BAD_FRAMES = {
    # name: (frames, reason, source named in the log, topic named in the log)
    "not msgpack": ([TOPIC, b"\xc1\xc1\xc1"], "not_msgpack", "?", "obs.rig.imu"),
    "wrong protocol version": (envelope_changed(v=2), "bad_version", "inj", "obs.rig.imu"),
    "missing array frame": (obs_frames()[:2], "frame_count", "inj", "obs.rig.imu"),
    "extra frame": ([*obs_frames(), b"\0" * 12], "frame_count", "inj", "obs.rig.imu"),
    "bytes do not match dtype x shape": (
        [*obs_frames()[:2], b"\0" * 11],
        "array_size",
        "inj",
        "obs.rig.imu",
    ),
    "NaN where the schema forbids it": (
        obs_frames(np.array([np.nan, 0, 0], "<f4")),
        "nan",
        "inj",
        "obs.rig.imu",
    ),
    "unknown stream": (obs_frames(stream="ghost"), "unknown_stream", "inj", "obs.rig.ghost"),
    "wrong shape": (obs_frames(np.zeros(4, "<f4")), "schema_mismatch", "inj", "obs.rig.imu"),
    "wrong dtype": (obs_frames(np.zeros(3, "<f8")), "schema_mismatch", "inj", "obs.rig.imu"),
    "non-UTF-8 topic": ([b"obs.rig.\xff", *obs_frames()[1:]], "bad_topic", "?", "obs.rig.\\\\xff"),
    "topic mismatch": ([b"obs.rig.other", *obs_frames()[1:]], "topic_mismatch", "inj", "obs.rig.other"),
    "unknown kind": (envelope_changed(kind="telemetry"), "unknown_kind", "inj", "obs.rig.imu"),
    "invalid field": (envelope_changed(asset="r.i.g"), "bad_field", "inj", "obs.rig.imu"),
    "infinite shape": (
        envelope_changed(arrays=[["values", "<f4", [float("inf")]]]),
        "bad_array",
        "inj",
        "obs.rig.imu",
    ),
}


@pytest.fixture
def victim(bus, bus_config):
    """A subscriber that knows SCHEMA (from the bus cache) and listens to ``obs.rig.``."""
    with Publisher(bus_config, "announcer") as pub:
        pub.announce(SCHEMA)
        assert wait_for(lambda: SCHEMA.topic in bus.schemas)
    with Subscriber(bus_config, ("obs.rig.",), name="victim") as sub:
        assert sub.ready and ("rig", "imu") in sub.schemas
        yield sub


@pytest.mark.parametrize("case", list(BAD_FRAMES))
def test_bad_frame_is_rejected_logged_counted_and_the_next_good_frame_arrives(victim, injector, caplog, case):
    frames, reason, source, topic = BAD_FRAMES[case]
    assert injector.wait_subscribed(TOPIC)
    with caplog.at_level(logging.WARNING, logger="bridge.subscriber"):
        injector.send(frames)
        injector.send(obs_frames(np.array([1, 2, 3], "<f4"), seq=100))
        good = recv_until(victim, lambda m: isinstance(m, Observation))
    assert good is not None, f"the good frame after {case!r} never arrived"
    assert (good.source, good.seq, good.values.tolist()) == ("inj", 100, [1.0, 2.0, 3.0])
    assert dict(victim.accounting.rejects) == {reason: 1}
    lines = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert len(lines) == 1, lines
    assert f"victim rejected a frame: {reason}:" in lines[0]
    assert f"source {source!r}" in lines[0]
    assert f"topic '{topic}" in lines[0]
    assert victim.accounting.gaps == 0


def test_repeated_bad_frames_are_counted_each_but_logged_once(victim, injector, caplog):
    assert injector.wait_subscribed(TOPIC)
    with caplog.at_level(logging.WARNING, logger="bridge.subscriber"):
        for seq in range(50):
            injector.send(obs_frames(np.array([np.nan, 0, 0], "<f4"), seq=seq))
        injector.send(obs_frames(seq=50))
        assert recv_until(victim, lambda m: isinstance(m, Observation)) is not None
    assert victim.accounting.rejects == {"nan": 50}
    assert len([r for r in caplog.records if "rejected" in r.getMessage()]) == 1
    assert victim.accounting.gaps == 0  # rejected frames still advance the sequence
    assert victim.accounting.received == 1


def test_out_of_range_values_are_delivered_and_counted(victim, injector):
    assert injector.wait_subscribed(TOPIC)
    injector.send(obs_frames(np.array([11, 0, 0], "<f4"), seq=0))  # ax is bounded to [-10, 10]
    message = recv_until(victim, lambda m: isinstance(m, Observation))
    assert message is not None and message.values[0] == 11
    assert victim.accounting.streams[("inj", "obs.rig.imu")].out_of_range == 1
    assert victim.accounting.rejected == 0


def test_unbounded_integer_stream_is_never_out_of_range(bus, bus_config):
    schema = StreamSchema(
        "rig", "count", "vector", "<i4", (2,), 10.0, (vector_schema().sensors[1], vector_schema().sensors[0])
    )
    unbounded = StreamSchema("rig", "ticks", "vector", "<i4", (1,), 10.0, (schema.sensors[0],))
    with Subscriber(bus_config, ("obs.rig.",), name="ints") as sub, Publisher(bus_config, "p") as pub:
        pub.announce(unbounded)
        assert pub.wait_subscribed(unbounded.data_topic, TIMEOUT_S)
        for value in (0, -(2**31), 2**31 - 1):
            pub.publish(
                Observation("rig", "ticks", 1, np.array([value], "<i4"), schema_id=unbounded.schema_id)
            )
        got = [recv_until(sub, lambda m: isinstance(m, Observation)) for _ in range(3)]
    assert [int(m.values[0]) for m in got if m is not None] == [0, -(2**31), 2**31 - 1]
    assert sub.accounting.streams[("p", "obs.rig.ticks")].out_of_range == 0


def test_schema_with_infinite_shape_does_not_break_the_bus(bus, bus_config, injector, zmq_context):
    frames = encode(SCHEMA, source="inj", seq=0)
    env = msgpack.unpackb(frames[1])
    assert injector.wait_subscribed(b"schema.rig.imu")  # the bus cache's own subscription
    injector.send([frames[0], msgpack.packb({**env, "shape": [float("inf")]})])
    injector.send(encode(vector_schema(stream="after"), source="inj", seq=1))
    assert wait_for(lambda: "schema.rig.after" in bus.schemas), "the bus stopped caching schemas"
    with ControlClient(bus_config.control_endpoint, context=zmq_context) as control:
        assert control.request("ping")["ok"] is True
    assert "schema.rig.imu" not in bus.schemas
