"""The simulator on a real bus: schemas, gap-free streams, fault events, actions in, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from bridge import Action, Event, Observation, Publisher, StreamSchema, Subscriber
from sim import faults as fl
from sim.runner import SimConfig, run_sim


def run_in_thread(config, bus_config):
    result: dict = {}
    ready = threading.Event()
    stop = threading.Event()

    def target():
        result["stats"] = run_sim(
            config, bus_config, stop, on_ready=lambda info: (result.update(info), ready.set())
        )

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, ready, stop, result


def collect(sub, thread, timeout_s=20.0):
    messages = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        message = sub.recv(timeout_s=0.5)
        if message is not None:
            messages.append(message)
        elif not thread.is_alive():
            break
    return messages


def test_fast_sim_publishes_every_stream_without_gaps(bus_config):
    config = SimConfig(
        scene="cartpole",
        assets=3,
        realtime=False,
        duration_s=5.0,
        state_hz=60,
        camera_hz=10,
        faults=(("cartpole-2", fl.SensorBias(sensor="pole_angle", bias=0.1, at_s=1.5)),),
    )
    with Subscriber(bus_config, ("obs.", "event."), name="test-sim") as sub:
        thread, _, _, result = run_in_thread(config, bus_config)
        messages = collect(sub, thread)
        thread.join(10)
    states = [m for m in messages if isinstance(m, Observation) and m.stream == "state"]
    frames = [m for m in messages if isinstance(m, Observation) and m.stream == "camera"]
    events = [m for m in messages if isinstance(m, Event)]
    assert len(states) == 3 * 300 and len(frames) == 3 * 50
    assert frames[0].values.shape == (64, 64, 3) and frames[0].values.dtype == np.uint8
    for asset in ("cartpole-0", "cartpole-1", "cartpole-2"):
        ts = [m.t_ns for m in states if m.asset == asset]
        assert np.allclose(np.diff(ts), 1e9 / 60, atol=1)  # sim-time stamps, evenly spaced
    faults = [e for e in events if e.category == "fault"]
    assert [(e.asset, e.name) for e in faults] == [("cartpole-2", "sensor_bias")]
    assert faults[0].params["sim_time_s"] == pytest.approx(1.5)
    markers = [(e.asset, e.name) for e in events if e.category == "marker"]
    starts = [(f"cartpole-{k}", "episode_start") for k in range(3)]
    assert markers == starts + [(f"cartpole-{k}", "episode_end") for k in range(3)]
    start = next(e for e in events if e.name == "episode_start" and e.asset == "cartpole-1")
    assert start.params["scene"] == "cartpole" and start.params["controller"] == "default"
    assert start.params["seed"] == 1 and start.t_ns < min(m.t_ns for m in states)
    snapshot = sub.accounting.snapshot()
    assert all(s.gaps == 0 for s in snapshot.streams)
    assert snapshot.rejects == {}
    assert ("cartpole-0", "state") in sub.schemas
    assert result["stats"].dropped == 0


def test_actions_from_the_bus_drive_the_asset_and_bad_ones_are_reported(bus_config):
    config = SimConfig(
        scene="cartpole", assets=1, realtime=True, controller="bus", camera_hz=0, duration_s=30
    )
    with (
        Subscriber(bus_config, ("obs.cartpole-0.", "event.cartpole-0.error"), name="test-act") as sub,
        Publisher(bus_config, "planner") as pub,
    ):
        thread, ready, stop, result = run_in_thread(config, bus_config)
        assert ready.wait(10)
        assert pub.wait_subscribed("act.cartpole-0.cmd", 5)
        for values in (np.array([99.0]), np.zeros(3), np.array([np.nan])):
            pub.publish(Action("cartpole-0", time.time_ns(), values))
        for _ in range(30):
            pub.publish(Action("cartpole-0", time.time_ns(), np.array([10.0])))
            time.sleep(0.01)
        errors, velocities = [], []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (len(errors) < 3 or not velocities or velocities[-1] < 0.5):
            message = sub.recv(timeout_s=0.5)
            if isinstance(message, Event):
                errors.append(message)
            elif isinstance(message, Observation):
                velocities.append(message.values[1])
        stop.set()
        thread.join(10)
    assert [e.category for e in errors] == ["error"] * 3
    assert "cart_force" in errors[0].message and "shape (3,)" in errors[1].message
    assert velocities[-1] > 0.5  # +10 N pushed the cart along +x
    stats = result["stats"]
    # the 30 commands at most: its own act.cartpole-0.applied (60 a second) are not commands
    assert stats.rejected_actions == 3 and 1 <= stats.actions <= 30


def test_the_held_action_goes_out_before_each_observation_with_its_time(bus_config):
    """``act.<asset>.applied``: the default controller's command for each reading (computed from
    that reading: no excitation, ideal sensors), saturated at the bounds, published just before
    the reading with the same ``t_ns``."""
    from sim.scenes.cartpole import balance_force

    config = SimConfig(
        scene="cartpole", assets=2, realtime=False, camera_hz=0, state_hz=30, control_hz=60,
        duration_s=3, excitation=0.0,
    )  # fmt: skip
    topics = ("obs.cartpole-1.state", "act.cartpole-1.")
    with Subscriber(bus_config, topics, name="test-applied", require_schema=False) as sub:
        thread, ready, _, result = run_in_thread(config, bus_config)
        assert ready.wait(10)
        messages = collect(sub, thread)
        thread.join(10)
        actuators = sub.schemas[("cartpole-1", "state")].actuators
    low, high = np.array([a.low for a in actuators]), np.array([a.high for a in actuators])
    observations = [m for m in messages if isinstance(m, Observation)]
    assert len(observations) == 90  # 3 s at 30 Hz
    for k, message in enumerate(messages):
        if not isinstance(message, Observation):
            continue
        before = messages[k - 1]
        assert isinstance(before, Action) and before.stream == "applied", before
        assert before.t_ns == message.t_ns
        expected = np.clip(balance_force(*message.values), low, high)
        np.testing.assert_allclose(before.values, expected, rtol=0, atol=1e-9)
    forces = [m.values[0] for m in messages if isinstance(m, Action)]
    assert np.ptp(forces) > 0.1  # a controller at work, not a constant
    assert result["stats"].actions == 0


def test_run_sim_rejects_bad_configs_before_touching_the_bus(bus_config):
    with pytest.raises(ValueError, match="unknown scene 'teleporter'"):
        SimConfig(scene="teleporter")
    with pytest.raises(ValueError, match="does not exist"):
        run_sim(SimConfig(scene="urdf", urdf="/no/such.urdf", realtime=False, duration_s=1), bus_config)
    with pytest.raises(fl.FaultError, match="no link named 'wing'"):
        run_sim(
            SimConfig(duration_s=1, realtime=False, faults=(("", fl.MassChange(link="wing", factor=2)),)),
            bus_config,
        )
    with pytest.raises(ValueError, match="asset 'cartpole-9'"):
        run_sim(
            SimConfig(duration_s=1, faults=(("cartpole-9", fl.JointLock(joint="cart_to_pole")),)), bus_config
        )


def twin(*args, env=None, timeout=60):
    return subprocess.run(
        [sys.executable, "-c", "from twin.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scene", "warp-drive"], "unknown scene 'warp-drive'"),
        (["--scene", "urdf", "--urdf", "/nope/robot.urdf"], "URDF '/nope/robot.urdf' does not exist"),
        (["--fault", '{"kind": "melt"}'], "unknown fault kind 'melt'"),
        (["--fault", '{"kind": "payload", "link": "wing"}'], "no link named 'wing'"),
    ],
)
def test_cli_bad_input_is_one_readable_line(args, message, bus_config):
    done = twin("sim", *args, "--duration", "1", env=bus_config.env())
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.startswith("twin sim:")]
    assert len(lines) == 1 and message in lines[0]


def test_cli_parses_unparsable_urdf(tmp_path, bus_config):
    bad = tmp_path / "bad.urdf"
    bad.write_text("<robot><link></robot>")
    done = twin("sim", "--scene", "urdf", "--urdf", str(bad), env=bus_config.env())
    assert done.returncode == 2 and "does not parse" in done.stderr


def test_cli_runs_for_a_duration_and_says_when_ready(bus_config):
    done = twin("sim", "--scene", "rotor", "--assets", "2", "--fast", "--duration", "2", env=bus_config.env())
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines[0]["event"] == "sim_ready" and lines[0]["assets"] == ["rotor-0", "rotor-1"]
    assert lines[-1]["event"] == "sim_stopped" and lines[-1]["ticks"] == 480


def test_cli_stops_cleanly_on_sigterm(bus_config):
    proc = subprocess.Popen(
        [sys.executable, "-c", "from twin.cli import main; main()", "sim", "--camera-hz", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **bus_config.env()},
    )
    try:
        for line in proc.stdout:
            if "sim_ready" in line:
                break
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert "sim_stopped" in out


def test_schema_is_retrievable_by_late_joiners(bus_config):
    config = SimConfig(scene="rotor", realtime=False, duration_s=0.5, camera_hz=0)
    run_sim(config, bus_config)
    with Subscriber(bus_config, ("obs.",), name="late") as sub:
        schema = sub.schemas[("rotor-0", "state")]
    assert isinstance(schema, StreamSchema)
    assert schema.units == ("rad/s", "N*m", "m/s^2", "K", "m/s^2")
    assert schema.actuators[0].name == "motor_torque"
