"""The bus's control endpoint: ping, cached schemas by prefix, probe, and bad requests."""

from __future__ import annotations

import msgpack
import pytest
import zmq
from busutil import TIMEOUT_S, image_schema, vector_schema, wait_for

from bridge import PROTOCOL_VERSION, BusUnavailable, ControlClient, Heartbeat, Publisher, StreamSchema, decode


@pytest.fixture
def control(bus_config, zmq_context):
    with ControlClient(bus_config.control_endpoint, timeout_s=TIMEOUT_S, context=zmq_context) as client:
        yield client


def test_ping_reports_protocol_and_endpoints(control, bus_config):
    reply = control.request("ping")
    assert reply["ok"] is True and reply["protocol"] == PROTOCOL_VERSION
    assert reply["endpoints"] == {
        "pub": bus_config.pub_endpoint,
        "sub": bus_config.sub_endpoint,
        "control": bus_config.control_endpoint,
    }
    assert reply["uptime_s"] >= 0


def test_schemas_filtered_by_prefix(bus, bus_config, control):
    imu, cam, other = vector_schema(), image_schema(), vector_schema(asset="arm")
    with Publisher(bus_config, "announcer") as pub:
        for schema in (imu, cam, other):
            pub.announce(schema)
        assert wait_for(lambda: len(bus.schemas) == 3)
    everything = control.request("schemas")["schemas"]
    assert [topic for topic, _ in everything] == sorted(s.topic for s in (imu, cam, other))
    rows = control.request("schemas", prefix="schema.rig.")["schemas"]
    assert [topic for topic, _ in rows] == ["schema.rig.cam", "schema.rig.imu"]
    decoded = [decode([t.encode(), msgpack.packb(env)]) for t, env in rows]
    assert all(isinstance(s, StreamSchema) for s in decoded)
    assert [s.schema_id for s in decoded] == [cam.schema_id, imu.schema_id]
    assert control.request("schemas", prefix="schema.nothing.")["schemas"] == []
    assert control.request("ping")["schemas"] == 3


def test_probe_publishes_a_heartbeat_from_the_given_source(bus, bus_config, zmq_context, control):
    sub = zmq_context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(bus_config.sub_endpoint)
    sub.setsockopt(zmq.SUBSCRIBE, b"hb.probe-test")
    try:
        beat = None
        for _ in range(50):  # the subscription propagates asynchronously: probe until one arrives
            control.request("probe", source="probe-test")
            if sub.poll(100):
                beat = decode(sub.recv_multipart())
                break
        assert isinstance(beat, Heartbeat)
        assert (beat.source, beat.role) == ("probe-test", "probe")
        assert bus.probes >= 1
    finally:
        sub.close(linger=0)


@pytest.mark.parametrize(
    ("op", "args", "error"),
    [
        ("launch", {}, "unknown op 'launch'"),
        ("probe", {"source": "not a name"}, "not a valid name"),
        ("probe", {}, "not a valid name"),
        ("schemas", {"prefix": 3}, "prefix must be a string"),
    ],
)
def test_bad_ops_get_an_error_reply(control, op, args, error):
    with pytest.raises(RuntimeError, match=error):
        control.request(op, **args)
    assert control.request("ping")["ok"] is True


@pytest.mark.parametrize(
    "body", [b"\xc1\xc1 not msgpack", b"", msgpack.packb([1, 2]), msgpack.packb("ping"), b"\x92\x01"]
)
def test_garbage_request_gets_an_error_reply_and_the_bus_keeps_serving(
    bus_config, zmq_context, control, body
):
    raw = zmq_context.socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(bus_config.control_endpoint)
    try:
        raw.send_multipart([b"", body])
        assert raw.poll(int(TIMEOUT_S * 1000)), "the bus did not answer a garbage request"
        reply = msgpack.unpackb(raw.recv_multipart()[-1])
        assert reply["ok"] is False and reply["id"] is None and reply["error"]
    finally:
        raw.close(linger=0)
    assert control.request("ping")["ok"] is True


def test_control_client_times_out_when_no_bus_answers(zmq_context):
    with (
        ControlClient("tcp://127.0.0.1:9", timeout_s=0.2, context=zmq_context) as client,
        pytest.raises(BusUnavailable, match="did not answer 'ping'"),
    ):
        client.request("ping")
