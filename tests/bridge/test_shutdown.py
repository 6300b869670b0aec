"""Clean shutdown: threads joined, sockets closed (a context can be terminated), and the
``twin bus`` process exits 0 on SIGINT/SIGTERM and readably when its port is taken."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import zmq
from busutil import TIMEOUT_S, LineReader, recv_until, term_finishes, vector_schema

from bridge import Bus, BusConfig, ControlClient, Observation, Publisher, Subscriber

TWIN = str(Path(sys.executable).with_name("twin"))


def bus_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("bus-") and t.is_alive()}


def test_bus_stop_joins_its_threads():
    before = bus_threads()
    bus = Bus(BusConfig.local())
    bus.start()
    started = bus_threads() - before
    assert {t.name for t in started} == {"bus-proxy", "bus-service"}
    bus.stop()
    assert not any(t.is_alive() for t in started)
    assert bus_threads() - before == set()
    bus.stop()  # a second stop is harmless


def test_bus_closes_its_sockets_on_a_given_context():
    context = zmq.Context()
    try:
        with Bus(BusConfig.local(), context=context) as bus:
            control = ControlClient(bus.config.control_endpoint, context=context)
            assert control.request("ping")["ok"]
            control.close()
        assert term_finishes(context), "context.term() blocked: the bus left a socket open"
    finally:
        context.destroy(linger=0)


def test_publisher_and_subscriber_close_their_sockets(bus_config):
    context = zmq.Context()
    try:
        schema = vector_schema()
        with (
            Subscriber(bus_config, ("obs.",), context=context) as sub,
            Publisher(bus_config, "closer", context=context) as pub,
        ):
            pub.announce(schema)
            assert pub.wait_subscribed(schema.data_topic, TIMEOUT_S)
            pub.publish(Observation("rig", "imu", 1, np.zeros(3, "<f4"), schema_id=schema.schema_id))
            assert recv_until(sub, lambda m: isinstance(m, Observation)) is not None
        with pytest.raises(RuntimeError, match="not open"):
            _ = pub.socket
        with pytest.raises(RuntimeError, match="not open"):
            _ = sub.socket
        assert term_finishes(context), "context.term() blocked: a socket was left open"
    finally:
        context.destroy(linger=0)


def test_publisher_close_is_bounded_when_the_bus_is_gone():
    context = zmq.Context()
    try:
        with Bus(BusConfig.local()) as bus:
            pub = Publisher(bus.config, "orphan", context=context).open()
        for i in range(100):  # queued for a bus that no longer exists
            pub.publish(Observation("rig", "imu", i, np.zeros(3, "<f4")))
        pub.close()
        assert term_finishes(context, timeout_s=pub.linger_s + TIMEOUT_S)
    finally:
        context.destroy(linger=0)


def test_term_detector_sees_a_leaked_socket():
    """The check above can fail: an open socket does block term()."""
    context = zmq.Context()
    leaked = context.socket(zmq.PUB)
    thread = threading.Thread(target=context.term, daemon=True)
    thread.start()
    thread.join(0.3)
    assert thread.is_alive()
    leaked.close(linger=0)
    thread.join(TIMEOUT_S)
    assert not thread.is_alive()


# --- the twin bus process -----------------------------------------------------------------------


def start_twin_bus(*endpoints: str) -> subprocess.Popen:
    pub, sub, control = endpoints or ("tcp://127.0.0.1:0",) * 3
    return subprocess.Popen(
        [TWIN, "bus", "--pub", pub, "--sub", sub, "--control", control],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(proc: subprocess.Popen) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=2 * TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"twin bus did not exit in time; stderr:\n{err}")
    return proc.returncode, err


@pytest.mark.fault
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_twin_bus_announces_itself_then_exits_0_on_signal(sig):
    proc = start_twin_bus()
    try:
        line = LineReader(proc.stdout).readline()
        assert line, "twin bus printed nothing"
        ready = json.loads(line)
        assert ready["event"] == "bus_ready"
        assert all(not ready[k].endswith(":0") for k in ("pub", "sub", "control"))
        with ControlClient(ready["control"], timeout_s=TIMEOUT_S) as control:
            assert control.request("ping")["endpoints"]["pub"] == ready["pub"]
        proc.send_signal(sig)
    finally:
        rc, err = stop(proc)
    assert rc == 0, err
    assert "Traceback" not in err


@pytest.mark.fault
def test_twin_bus_on_a_taken_port_exits_nonzero_with_one_readable_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        endpoint = f"tcp://127.0.0.1:{port}"
        proc = start_twin_bus(endpoint, "tcp://127.0.0.1:0", "tcp://127.0.0.1:0")
        rc, err = stop(proc)
    assert rc != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert endpoint in lines[0] and "in use" in lines[0].lower()
    assert "Traceback" not in err


def test_bus_start_on_a_taken_port_raises_and_closes_what_it_opened():
    context = zmq.Context()
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            endpoint = f"tcp://127.0.0.1:{taken.getsockname()[1]}"
            config = BusConfig(endpoint, "tcp://127.0.0.1:0", "tcp://127.0.0.1:0")
            bus = Bus(config, context=context)
            with pytest.raises(OSError, match=f"cannot bind {endpoint}"):
                bus.start()
        assert term_finishes(context), "a failed start left a socket open"
    finally:
        context.destroy(linger=0)
