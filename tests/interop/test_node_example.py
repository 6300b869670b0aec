"""The Node.js example of docs/examples/node talks to a real bus, both ways.

(a) ``node publish.mjs`` -> Python :class:`bridge.Subscriber`: every observation arrives,
    validated against the schema the Node publisher announced, with no reject and no gap.
(b) Python :class:`bridge.Publisher` -> ``node subscribe.mjs``: the observations are printed
    as JSON lines with the right seq, exact ``t_ns`` and values.

``npm ci`` runs once per session in docs/examples/node (node_modules is gitignored); without
node/npm, or when the packages cannot be installed, the tests skip with the reason.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bridge import Bus, BusConfig, Observation, Publisher, SensorSpec, StreamSchema, Subscriber

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "node"
NPM_TIMEOUT_S = 300
NODE_TIMEOUT_S = 60


@pytest.fixture(scope="session")
def node_example() -> Path:
    """docs/examples/node with its packages installed (``npm ci``), or skip with the reason."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("Node.js example needs `node` and `npm` on PATH")
    try:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=EXAMPLE,
            check=False,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"`npm ci` in {EXAMPLE} took more than {NPM_TIMEOUT_S} s (no registry?)")
    if done.returncode != 0:
        pytest.skip(f"`npm ci` in {EXAMPLE} failed (no registry?): {done.stderr.strip()[-800:]}")
    check = subprocess.run(
        [node, "-e", 'import("zeromq").then(() => import("@msgpack/msgpack"))'],
        cwd=EXAMPLE,
        check=False,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_S,
    )
    if check.returncode != 0:
        pytest.skip(f"zeromq/@msgpack/msgpack do not load under {node}: {check.stderr.strip()[-800:]}")
    return EXAMPLE


def _node_env(config: BusConfig) -> dict[str, str]:
    return {**os.environ, **config.env()}


def test_node_publisher_to_python_subscriber(node_example: Path, bus: Bus, bus_config: BusConfig) -> None:
    count = 20
    with Subscriber(bus_config, ("obs.cart-0.",), name="interop") as sub:
        assert sub.ready
        before = time.time_ns()
        done = subprocess.run(
            [
                "node",
                "publish.mjs",
                "--count",
                str(count),
                "--rate",
                "500",
                "--source",
                "node-pub-1",
                "--wait-subscriber",
            ],
            cwd=node_example,
            env=_node_env(bus_config),
            check=False,
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT_S,
        )
        assert done.returncode == 0, f"publish.mjs failed:\n{done.stdout}\n{done.stderr}"
        received: list[Observation] = []
        deadline = time.monotonic() + 10.0
        while len(received) < count and time.monotonic() < deadline:
            message = sub.recv(timeout_s=0.5)
            if isinstance(message, Observation):
                received.append(message)
        sub.drain()  # the closing heartbeat, so trailing loss would be counted too
        accounting = sub.accounting
        schema = sub.schemas.get(("cart-0", "state"))

    assert len(received) == count, f"got {len(received)}/{count}; node said: {done.stderr}"
    assert accounting.rejected == 0, dict(accounting.rejects)
    assert accounting.gaps == 0
    assert schema is not None and schema.sensor_names == ("x", "x_dot", "theta", "theta_dot")
    assert schema.source == "node-pub-1" and schema.dtype == "<f8" and schema.shape == (4,)
    assert schema.sensors[0].low == -2.4 and schema.sensors[1].high == float("inf")
    assert "schema.cart-0.state" in bus.schemas  # the bus cached the Node schema for late joiners
    for i, obs in enumerate(received):
        assert (obs.source, obs.seq, obs.schema_id) == ("node-pub-1", i, "")
        assert type(obs.t_ns) is int and before - 10**9 < obs.t_ns < time.time_ns() + 10**9
        assert obs.values.dtype == np.dtype("<f8")
        assert obs.values.tolist() == [0.1 * i, -0.5 * i, 0.25, 1.0 + i]
    assert all(a.t_ns <= b.t_ns for a, b in itertools.pairwise(received))
    heartbeat_topic = ("node-pub-1", "hb.node-pub-1")
    assert accounting.streams[heartbeat_topic].received == 1
    assert accounting.streams[("node-pub-1", "obs.cart-0.state")].last_seq == count - 1


def _read_lines(stream, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def test_python_publisher_to_node_subscriber(node_example: Path, bus_config: BusConfig) -> None:
    count = 5
    proc = subprocess.Popen(
        ["node", "subscribe.mjs", "--topic", "obs.cart-0.", "--count", str(count), "--timeout", "30"],
        cwd=node_example,
        env=_node_env(bus_config),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
    try:
        try:
            first = lines.get(timeout=NODE_TIMEOUT_S)
        except queue.Empty:
            pytest.fail("subscribe.mjs printed nothing (no readiness line)")
        assert first is not None and json.loads(first) == {"event": "ready"}, first
        schema = StreamSchema(
            asset="cart-0",
            stream="state",
            kind="vector",
            dtype="<f8",
            shape=(4,),
            rate_hz=50.0,
            sensors=tuple(SensorSpec(name, "1") for name in ("x", "x_dot", "theta", "theta_dot")),
        )
        t0 = 1_700_000_000_123_456_789  # > 2**53: must arrive exactly
        sent = []
        with Publisher(bus_config, "py-pub") as pub:
            pub.announce(schema)
            assert pub.wait_subscribed("obs.cart-0.state", 5.0)
            for i in range(count):
                values = np.array([i / 3, -1e-300, 6.02e23, float(-i)])
                pub.publish(Observation("cart-0", "state", t0 + i, values, schema_id=schema.schema_id))
                sent.append(values.tolist())
            pub.heartbeat()  # hb.py-pub: not subscribed by the Node side, must not show up
        proc.wait(timeout=NODE_TIMEOUT_S)  # stdout is read by the thread; stderr stays small
        err = proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, f"subscribe.mjs exited {proc.returncode}:\n{err}"
    printed = []
    while (line := lines.get(timeout=5)) is not None:
        printed.append(json.loads(line))
    assert len(printed) == count, (printed, err)
    for i, (row, values) in enumerate(zip(printed, sent, strict=True)):
        assert row["topic"] == "obs.cart-0.state" and row["kind"] == "obs"
        assert (row["source"], row["seq"], row["schema_id"]) == ("py-pub", i, schema.schema_id)
        assert int(row["t_ns"]) == t0 + i
        assert row["values"] == values
