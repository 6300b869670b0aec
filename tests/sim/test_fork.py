"""What-if forks: snapshot, branch with different inputs or faults, restore; same inputs, same bits."""

from __future__ import annotations

import numpy as np

from sim import faults as fl
from sim.registry import make_scene
from sim.scene import SceneConfig
from sim.sensors import SensorModel
from sim.world import World


def roll(scene, steps, actions=None):
    rows = []
    for k in range(steps):
        action = scene.control() if actions is None else actions[k]
        scene.step(action)
        rows.append(scene.observe())
    return np.array(rows)


def test_forks_with_faults_are_bitwise_equal_and_restore_undoes_them():
    noisy = {"pole_angle": SensorModel(noise_std=0.01, latency_s=0.02)}
    with make_scene("cartpole", SceneConfig(seed=3, sensors=noisy)) as scene:
        roll(scene, 100)
        snap = scene.save_state()
        baseline = roll(scene, 200)
        what_if = []
        for _ in range(2):
            scene.restore_state(snap)
            scene.apply_fault(
                fl.Payload(link="pole", mass_kg=0.2, offset_m=(0, 0, 0.5), at_s=scene.time_s + 0.1)
            )
            scene.apply_fault(fl.MassChange(link="cart", factor=2.0, at_s=scene.time_s, ramp_s=0.2))
            what_if.append(roll(scene, 200))
        assert np.array_equal(what_if[0], what_if[1])
        assert not np.array_equal(what_if[0], baseline)
        scene.restore_state(snap)
        assert np.array_equal(roll(scene, 200), baseline)  # payload removed, mass restored
        body, link = scene.links["cart"]
        assert scene.client.getDynamicsInfo(body, link)[0] == 1.0


def test_fork_with_a_different_action_sequence():
    with make_scene("rotor", SceneConfig(seed=1)) as scene:
        roll(scene, 240)
        snap = scene.save_state()
        push = [np.array([15.0])] * 240
        brake = [np.array([-15.0])] * 240
        a = roll(scene, 240, push)
        scene.restore_state(snap)
        b = roll(scene, 240, brake)
        scene.restore_state(snap)
        a2 = roll(scene, 240, push)
        assert np.array_equal(a, a2)
        assert a[-1, 0] > b[-1, 0] + 10  # faster when pushed


def test_shared_world_snapshot():
    with World() as world:
        scenes = [
            make_scene("cartpole", SceneConfig(asset=f"c-{k}", seed=k), world, (0, 25 * k, 0))
            for k in range(3)
        ]

        def go():
            out = []
            for _ in range(120):
                for s in scenes:
                    s.set_action(s.control())
                world.step()
                out.append(np.concatenate([s.observe() for s in scenes]))
            return np.array(out)

        snap = world.save_state()
        first = go()
        world.restore_state(snap)
        assert np.array_equal(go(), first)
