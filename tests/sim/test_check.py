"""Every registered scene passes the conformance check (schema, step, reset, fork, camera)."""

from __future__ import annotations

import os

import numpy as np
import pybullet_data
import pytest

from sim.check import SceneCheckError, check_scene
from sim.registry import SCENES, make_scene
from sim.scene import ActionError, SceneConfig
from sim.sensors import SensorModel

DATA = pybullet_data.getDataPath()
URDFS = ["pendulum5.urdf", "r2d2.urdf", "franka_panda/panda.urdf"]


def config_for(name: str, **kw) -> SceneConfig:
    if name == "urdf":
        kw.setdefault("urdf", os.path.join(DATA, "pendulum5.urdf"))
    return SceneConfig(**kw)


@pytest.mark.parametrize("name", sorted(SCENES))
def test_registered_scene_conforms(name):
    with make_scene(name, config_for(name, seed=5)) as scene:
        check_scene(scene)


@pytest.mark.parametrize("urdf", URDFS)
def test_urdf_scene_on_models_without_a_scene(urdf):
    with make_scene("urdf", SceneConfig(urdf=os.path.join(DATA, urdf))) as scene:
        check_scene(scene, steps=60)
        names = [s.name for s in scene.schema().sensors]
        assert len(names) == 2 * len(scene.schema().actuators)
        assert all(n.endswith(("_position", "_velocity")) for n in names)


@pytest.mark.parametrize("name", ["cartpole", "rotor"])
def test_noisy_sensors_still_conform_and_noise_follows_the_seed(name):
    sensors = {
        "cart_position" if name == "cartpole" else "speed": SensorModel(
            noise_std=0.01, bias=0.1, quantum=0.001, rate_hz=60, latency_s=0.01
        )
    }
    runs = []
    for _ in range(2):
        with make_scene(name, SceneConfig(seed=9, sensors=sensors)) as scene:
            check_scene(scene, steps=48, camera=False)
            scene.reset(9)
            rows = []
            for _ in range(48):
                scene.step(scene.control())
                rows.append(scene.observe() - scene.true_state())
            runs.append(np.array(rows))
    assert np.array_equal(runs[0], runs[1])
    assert np.abs(runs[0][:, 0]).max() > 0.05  # bias and noise are visible


def test_depth_camera_in_metres():
    from sim.camera import CameraConfig

    with make_scene("cartpole", SceneConfig(camera=CameraConfig(depth=True, width=32, height=24))) as scene:
        check_scene(scene, steps=24)
        rgb, depth = scene.camera()
        assert rgb.shape == (24, 32, 3) and depth.shape == (24, 32, 1)
        assert 1.0 < float(depth.min()) < 5.0  # the cart is ~3.5 m from the camera


def test_check_scene_catches_a_nondeterministic_scene():
    with make_scene("cartpole", SceneConfig(seed=1)) as scene:
        original = scene.reset

        def sloppy_reset(seed=None):
            original(np.random.randint(1_000_000))

        scene.reset = sloppy_reset
        with pytest.raises(SceneCheckError, match="differ"):
            check_scene(scene, camera=False)


def test_bad_actions_name_the_actuator():
    with make_scene("cartpole") as scene:
        with pytest.raises(ActionError, match="cart_force"):
            scene.step(np.array([1e6]))
        with pytest.raises(ActionError, match=r"shape \(2,\)"):
            scene.step(np.zeros(2))
        scene.step(np.array([1.0]))  # still running
