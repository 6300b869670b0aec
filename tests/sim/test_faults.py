"""Faults change dynamics in the expected direction, are reported as events, and fail loudly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim import faults as fl
from sim.registry import make_scene
from sim.scene import SceneConfig


def hanging_frequency_hz(fault=None, seconds=6.0) -> float:
    with make_scene("cartpole", SceneConfig(controller="none")) as scene:
        scene.client.resetJointState(scene.body, 0, 0.0, 0.0)
        scene.client.resetJointState(scene.body, 1, math.pi - 0.2, 0.0)
        if fault is not None:
            scene.apply_fault(fault)
        angles = []
        for _ in range(round(seconds * 240)):
            scene.step(np.zeros(1))
            angles.append(scene.true_state()[2])
        deviation = np.unwrap(np.array(angles)) - math.pi
        crossings = np.flatnonzero(np.diff(np.sign(deviation)) != 0)
        periods = np.diff(crossings[::2]) / 240
        return 1.0 / float(np.mean(periods))


def test_heavier_pole_lowers_the_natural_frequency():
    base = hanging_frequency_hz()
    heavy = hanging_frequency_hz(fl.Payload(link="pole", mass_kg=0.3, offset_m=(0.0, 0.0, 0.5)))
    assert 0.3 < base < 2.0
    assert heavy < 0.97 * base  # theory (free cart): 0.63 Hz -> 0.59 Hz


def test_mass_change_scales_inertia_with_mass():
    with make_scene("cartpole") as scene:
        body, link = scene.links["pole"]
        mass0, _, inertia0 = scene.client.getDynamicsInfo(body, link)[:3]
        scene.apply_fault(fl.MassChange(link="pole", factor=3.0, at_s=0.1, ramp_s=0.1))
        for _ in range(36):
            scene.step(np.zeros(1))
        half = scene.client.getDynamicsInfo(body, link)
        assert mass0 < half[0] < 3 * mass0  # ramping
        for _ in range(48):
            scene.step(np.zeros(1))
        mass, _, inertia = scene.client.getDynamicsInfo(body, link)[:3]
        assert mass == pytest.approx(3 * mass0)
        assert np.allclose(inertia, 3 * np.array(inertia0))


def rotor_temperature(coulomb_nm: float | None, seconds: float = 90.0) -> float:
    with make_scene("rotor", SceneConfig(seed=4, excitation=0.0)) as scene:
        if coulomb_nm is not None:
            scene.apply_fault(fl.FrictionChange(joint="shaft", coulomb=coulomb_nm, at_s=1.0, ramp_s=5.0))
        for _ in range(round(seconds * 240)):
            scene.step(scene.control())
        events = scene.pop_events()
        if coulomb_nm is not None:
            assert [e.name for e in events] == ["friction_change"]
            assert events[0].params["sim_time_s"] == pytest.approx(1.0)
        return float(scene.true_state()[3])


def test_more_bearing_friction_heats_the_bearing():
    assert rotor_temperature(2.0) > rotor_temperature(None) + 1.0


def test_bearing_wear_raises_temperature_over_hours():
    temps = []
    for wear in (0.0, 2.0):
        with make_scene(
            "rotor", SceneConfig(seed=4, excitation=0.0, options={"wear_per_hour": wear})
        ) as scene:
            scene.world.tick = 3 * 3600 * 240  # three hours of running already
            scene.sensors.reset()
            for _ in range(240 * 60):
                scene.step(scene.control())
            temps.append(scene.true_state()[3])
    assert temps[1] > temps[0] + 0.5


def test_actuator_weakness_and_dead_zone():
    def cart_speed(fault):
        with make_scene("cartpole", SceneConfig(controller="none")) as scene:
            scene.client.resetJointState(scene.body, 0, 0.0, 0.0)
            if fault:
                scene.apply_fault(fault)
            for _ in range(48):
                scene.step(np.array([2.0]))
            return scene.true_state()[1]

    full = cart_speed(None)
    assert cart_speed(fl.ActuatorWeakness(actuator="cart_force", gain=0.5)) == pytest.approx(
        full / 2, rel=0.05
    )
    assert abs(cart_speed(fl.ActuatorDeadZone(actuator="cart_force", width=3.0))) < 0.05 * abs(full)


def test_collision_and_joint_lock_and_friction_on_the_rail():
    with make_scene("cartpole", SceneConfig(controller="none")) as scene:
        scene.client.resetJointState(scene.body, 0, 0.0, 0.0)
        scene.client.resetJointState(scene.body, 1, 0.0, 0.0)
        scene.apply_fault(
            fl.Collision(link="cart", mass_kg=2.0, speed_m_s=6.0, direction=(1, 0, 0), at_s=0.1)
        )
        for _ in range(120):
            scene.step(np.zeros(1))
        assert scene.true_state()[1] > 0.5  # the ball pushed the cart along +x
        scene.apply_fault(fl.JointLock(joint="slider_to_cart", at_s=scene.time_s))
        for _ in range(120):
            scene.step(np.array([10.0]))
        assert abs(scene.true_state()[1]) < 1e-3


def test_sensor_faults_and_their_end():
    with make_scene("rotor", SceneConfig(seed=2)) as scene:
        scene.apply_fault(fl.SensorStuck(sensor="speed", at_s=0.5))
        scene.apply_fault(fl.SensorDropout(sensor="torque", at_s=0.5, duration_s=0.5))
        scene.apply_fault(fl.SensorBias(sensor="bearing_temperature", bias=5.0, at_s=0.5))
        scene.apply_fault(fl.NoiseBurst(sensor="vibration", std=3.0, at_s=0.5, duration_s=0.25))
        scene.apply_fault(fl.CameraOcclusion(fraction=0.5, at_s=0.5))
        for _ in range(150):
            scene.step(scene.control())
        obs, truth = scene.observe(), scene.true_state()
        stuck = obs[0]
        assert np.isnan(obs[1])
        assert obs[3] == pytest.approx(truth[3] + 5.0)
        rgb, _ = scene.camera()
        assert not rgb[:, :32].any() and rgb[:, 32:].any()
        for _ in range(150):
            scene.step(scene.control())
        obs = scene.observe()
        assert obs[0] == stuck and not np.isnan(obs[1])
        names = [e.name for e in scene.pop_events()]
        assert "sensor_dropout_cleared" in names and "noise_burst_cleared" in names


@pytest.mark.parametrize(
    ("fault", "missing"),
    [
        (fl.MassChange(link="wing", factor=2.0), "link named 'wing'"),
        (fl.FrictionChange(joint="elbow", coulomb=1.0), "joint named 'elbow'"),
        (fl.SensorBias(sensor="altitude", bias=1.0), "sensor named 'altitude'"),
        (fl.ActuatorWeakness(actuator="thruster", gain=0.1), "actuator named 'thruster'"),
    ],
)
def test_fault_on_something_that_does_not_exist(fault, missing):
    with make_scene("cartpole") as scene, pytest.raises(fl.FaultError, match=missing):
        scene.apply_fault(fault)


def test_fault_validation_names_field_and_value():
    with pytest.raises(ValueError, match=r"MassChange.factor=-1"):
        fl.MassChange(link="pole", factor=-1)
    with pytest.raises(ValueError, match=r"at_s=nan"):
        fl.SensorBias(sensor="x", at_s=float("nan"))
    with pytest.raises(fl.FaultError, match="unknown fault kind 'melt'"):
        fl.fault_from_dict({"kind": "melt"})
    with pytest.raises(fl.FaultError, match=r"no parameter\(s\) \['colour'\]"):
        fl.fault_from_dict({"kind": "payload", "link": "pole", "colour": "red"})
    assert fl.fault_from_dict({"kind": "payload", "link": "pole", "offset_m": [0, 0, 1]}).offset_m == (
        0,
        0,
        1,
    )
