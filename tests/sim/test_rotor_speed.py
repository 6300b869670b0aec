"""The rotor's speed set-point actuator: schema in rad/s, PI step response, faults, conformance."""

from __future__ import annotations

import numpy as np
import pytest

from sim import faults as fl
from sim.check import check_scene
from sim.cli import _parse_options
from sim.registry import make_scene
from sim.scene import ActionError, SceneConfig

SPEED = {"actuator": "speed"}


def step_response(scene, setpoint: float, seconds: float) -> np.ndarray:
    rows = []
    for _ in range(round(seconds * 240)):
        scene.step(np.array([setpoint]))
        rows.append(scene.true_state()[:2])
    return np.array(rows)  # (n, 2): speed rad/s, motor torque N*m


def test_schema_declares_a_bounded_speed_set_point():
    with make_scene("rotor", SceneConfig(options=SPEED)) as scene:
        (actuator,) = scene.schema().actuators
        assert (actuator.name, actuator.unit, actuator.low, actuator.high) == (
            "speed_setpoint",
            "rad/s",
            -300.0,
            300.0,
        )
        with pytest.raises(ActionError, match="speed_setpoint"):
            scene.step(np.array([301.0]))
    with pytest.raises(ValueError, match="actuator='warp'"):
        make_scene("rotor", SceneConfig(options={"actuator": "warp"}))


@pytest.mark.parametrize("setpoint", [150.0, -80.0])
def test_step_response_settles_to_the_set_point(setpoint):
    with make_scene("rotor", SceneConfig(seed=2, controller="none", options=SPEED)) as scene:
        rows = step_response(scene, setpoint, 8.0)
    speed, torque = rows[:, 0], rows[:, 1]
    assert np.abs(torque).max() == pytest.approx(20.0)  # a big step saturates the motor...
    settled = speed[-240:]  # ...and the last second sits on the set-point
    assert np.abs(settled - setpoint).max() < 0.05
    overshoot = (speed - setpoint).max() if setpoint > 0 else (setpoint - speed).max()
    assert overshoot < 0.02 * abs(setpoint)  # anti-windup: no big overshoot after saturation
    # steady torque is the bearing's friction: c + b |w| = 0.2 + 0.002 |w|
    assert abs(torque[-1]) == pytest.approx(0.2 + 0.002 * abs(setpoint), rel=1e-3)


def test_a_weak_motor_is_compensated_until_it_saturates():
    with make_scene("rotor", SceneConfig(seed=2, controller="none", options=SPEED)) as scene:
        step_response(scene, 100.0, 6.0)
        scene.apply_fault(fl.ActuatorWeakness(actuator="speed_setpoint", gain=0.5, at_s=scene.time_s))
        scene.apply_fault(fl.FrictionChange(joint="shaft", coulomb=1.0, at_s=scene.time_s))
        rows = step_response(scene, 100.0, 6.0)
    assert abs(rows[-1, 0] - 100.0) < 0.05  # the integral absorbs weakness and friction
    assert rows[-1, 1] == pytest.approx(1.0 + 0.2, rel=1e-2)  # delivered torque: c' + b w


def test_speed_mode_conforms_and_runs_its_default_controller():
    with make_scene("rotor", SceneConfig(seed=5, options=SPEED)) as scene:
        check_scene(scene)
        scene.reset(5)
        for _ in range(240 * 5):
            scene.step(scene.control(1 / 240))
        assert 40.0 < scene.true_state()[0] < 260.0  # following a set-point in [50, 250]


def test_cli_options_parse_json_values_or_text():
    assert _parse_options(["actuator=speed", "max_speed_rad_s=200", "wear_per_hour=0.5"]) == {
        "actuator": "speed",
        "max_speed_rad_s": 200,
        "wear_per_hour": 0.5,
    }
    with pytest.raises(ValueError, match="KEY=VALUE"):
        _parse_options(["speed"])
