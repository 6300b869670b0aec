"""What the world-model team reads: the arm's camera shows the cubes, quaternions carry one sign,
the rotor's vibration RMS is the RMS of its vibration over the documented window."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.registry import make_scene
from sim.scene import SceneConfig, canonical_quaternion


def _pixel(view_matrix, projection, point, width: int, height: int) -> tuple[int, int]:
    """(row, column) where a world point lands in a frame (PyBullet matrices, column-major)."""
    view = np.array(view_matrix).reshape(4, 4).T
    proj = np.array(projection).reshape(4, 4).T
    clip = proj @ view @ np.array([*point, 1.0])
    x, y = clip[:2] / clip[3]
    return int((1.0 - y) / 2 * height), int((x + 1.0) / 2 * width)


def test_arm_camera_looks_down_on_every_cube_in_a_64x64_frame():
    with make_scene("arm", SceneConfig(seed=2)) as scene:
        # the arm swung round behind its base (at home it hangs over the cubes and hides some)
        scene.client.resetJointState(scene.robot, scene.indices[0], math.pi, 0.0)
        rgb, _ = scene.camera()
        cam = scene._camera
        assert rgb.shape == (64, 64, 3)
        for cube in scene.cubes:
            position = scene.client.getBasePositionAndOrientation(cube)[0]
            row, col = _pixel(cam.view_matrix, cam.projection, position, 64, 64)
            assert 4 <= row < 60 and 4 <= col < 60, (row, col)
            scene.client.resetBasePositionAndOrientation(cube, (50.0, 50.0, -5.0), (0, 0, 0, 1))
            without, _ = scene.camera()
            scene.client.resetBasePositionAndOrientation(cube, position, (0, 0, 0, 1))
            patch = np.s_[row - 1 : row + 2, col - 1 : col + 2]
            # the cube is a bright few pixels on the table, exactly where its position projects
            assert np.abs(rgb[patch].astype(int) - without[patch].astype(int)).max() > 40


def test_canonical_quaternion_keeps_w_non_negative():
    assert canonical_quaternion((0.1, -0.2, 0.3, -0.9)) == (-0.1, 0.2, -0.3, 0.9)
    assert canonical_quaternion((0.0, 0.0, 0.6, 0.8)) == (0.0, 0.0, 0.6, 0.8)


def test_arm_quaternions_use_the_canonical_sign():
    with make_scene("arm", SceneConfig(seed=1)) as scene:
        names = [s.name for s in scene.schema().sensors]
        w = [names.index(n) for n in names if n.endswith("_qw")]
        turned = (0.0, 0.0, math.sin(1.75), math.cos(1.75))  # 200 degrees about z: PyBullet's w < 0
        scene.client.resetBasePositionAndOrientation(scene.cubes[0], scene._at(0.5, 0, 0.025), turned)
        state = scene.true_state()
        i = names.index("cube0_qx")
        np.testing.assert_allclose(state[i : i + 4], [-t for t in turned], atol=1e-9)
        for _ in range(60):
            scene.step(scene.control())
            assert (scene.true_state()[w] >= 0.0).all()


@pytest.mark.parametrize("window_s", [1.0, 0.1])
def test_rotor_vibration_rms_is_the_rms_of_vibration_over_its_window(window_s):
    config = SceneConfig(seed=4, options={"actuator": "speed", "vibration_window_s": window_s})
    with make_scene("rotor", config) as scene:
        names = [s.name for s in scene.schema().sensors]
        vib, rms = names.index("vibration"), names.index("vibration_rms")
        assert scene.schema().sensors[rms].unit == "m/s^2"
        window = round(window_s * 240)
        seen = [scene.true_state()[vib]]
        for tick in range(300):
            scene.step(np.array([150.0]))
            state = scene.true_state()
            seen.append(state[vib])
            if tick in (5, 299):  # before the window fills, and a sliding full window
                last = np.array(seen[-window:])
                assert state[rms] == pytest.approx(math.sqrt(np.mean(last**2)), rel=1e-9)
        # at steady speed the imbalance reads u omega^2 / M over sqrt(2)
        for _ in range(240 * 3):
            scene.step(np.array([150.0]))
        omega = scene.true_state()[names.index("speed")]
        expected = scene.imbalance_kg_m * omega**2 / 5.0 / math.sqrt(2)
        assert scene.true_state()[rms] == pytest.approx(expected, rel=0.03)


def test_arm_places_cubes_anywhere_on_the_table_when_asked():
    from sim.scenes.arm import CUBE_AREA, CUBE_HOME, CUBE_SPACING_M

    def starts(options: dict, seed: int) -> np.ndarray:
        with make_scene("arm", SceneConfig(seed=seed, options=options)) as scene:
            names = [s.name for s in scene.schema().sensors]
            state = scene.true_state()
            return np.array([[state[names.index(f"cube{k}_{a}")] for a in "xy"] for k in range(3)])

    homes = np.array([starts({}, s) for s in range(8)])
    assert np.abs(homes - np.array(CUBE_HOME)).max() <= 0.03 + 1e-6  # the default: home +- 3 cm
    spots = np.array([starts({"cubes": "table"}, s) for s in range(8)])
    (x0, x1), (y0, y1) = CUBE_AREA
    assert (
        (spots[..., 0] >= x0) & (spots[..., 0] <= x1) & (spots[..., 1] >= y0) & (spots[..., 1] <= y1)
    ).all()
    for episode in spots:
        gaps = [np.linalg.norm(episode[i] - episode[j]) for i in range(3) for j in range(i + 1, 3)]
        assert min(gaps) >= CUBE_SPACING_M
    # spread over the area, not a few spots: each coordinate's spread is a good part of its range
    assert spots[..., 0].std() > 0.2 * (x1 - x0) and spots[..., 1].std() > 0.2 * (y1 - y0)
    np.testing.assert_array_equal(spots[3], starts({"cubes": "table"}, 3))  # seeded
    with pytest.raises(ValueError, match="options\\['cubes'\\]"):
        make_scene("arm", SceneConfig(options={"cubes": "floor"}))


def test_a_walled_tray_keeps_a_flung_cube_in_view_where_the_table_puts_it_back():
    """``cubes="tray"``: a cube thrown at 3 m/s toward the tray's far wall stops at the wall and
    moves continuously (no put-back); on the open table the same throw leaves the camera's
    field and the cube jumps back onto a free spot."""
    from sim.scenes.arm import CAMERA_CENTRE, CUBE_FIELD_M, TRAY_HALF_M

    def throw(cubes: str) -> np.ndarray:
        options = {"cubes": cubes}
        with make_scene("arm", SceneConfig(seed=1, controller="random", options=options)) as scene:
            cube = scene.cubes[2]
            x, y = CAMERA_CENTRE[0] + 0.1, CAMERA_CENTRE[1]
            for other, dy in zip(scene.cubes[:2], (-0.25, 0.25), strict=True):  # out of the way
                scene.client.resetBasePositionAndOrientation(
                    other, scene._at(x - 0.2, y + dy, 0.025), (0, 0, 0, 1)
                )
            scene.client.resetBasePositionAndOrientation(cube, scene._at(x, y, 0.025), (0, 0, 0, 1))
            scene.client.resetBaseVelocity(cube, (3.0, 0, 0), (0, 0, 0))
            path = []
            for _ in range(60):  # 2 s of control steps, the rescue checked at each
                action = scene.control()
                for _ in range(8):
                    scene.step(action)
                path.append(np.asarray(scene.client.getBasePositionAndOrientation(cube)[0]) - scene.origin)
            return np.array(path)

    tray = throw("tray")
    assert tray[:, 0].max() <= CAMERA_CENTRE[0] + TRAY_HALF_M  # stopped by the wall
    assert tray[-1, 0] > CAMERA_CENTRE[0] + TRAY_HALF_M - 0.1  # and lies by it, in view
    assert np.linalg.norm(np.diff(tray, axis=0), axis=1).max() < 0.15  # moved, never jumped
    table = throw("table")
    assert (table[:, 0] > CAMERA_CENTRE[0] + CUBE_FIELD_M).sum() <= 1  # left the field, put back
    assert np.linalg.norm(np.diff(table[:, :2], axis=0), axis=1).max() > 0.3  # the feeder's jump
    assert abs(table[-1, 0] - CAMERA_CENTRE[0]) < CUBE_FIELD_M


@pytest.mark.parametrize("controller", ["default", "random"])
def test_with_cubes_on_the_table_a_cube_leaving_the_view_is_put_back_at_once(controller: str):
    from sim.scenes.arm import CUBE_AREA, CUBE_SPACING_M

    with make_scene("arm", SceneConfig(seed=4, controller=controller, options={"cubes": "table"})) as scene:
        scene.control()
        scene.client.resetBasePositionAndOrientation(
            scene.cubes[1], scene._at(1.3, -0.9, 0.025), (0, 0, 0, 1)
        )
        scene.control()  # the next control step
        where = [
            np.asarray(scene.client.getBasePositionAndOrientation(c)[0]) - scene.origin for c in scene.cubes
        ]
        (x0, x1), (y0, y1) = CUBE_AREA
        assert x0 <= where[1][0] <= x1 and y0 <= where[1][1] <= y1
        assert min(np.linalg.norm(where[1][:2] - w[:2]) for w in (where[0], where[2])) >= CUBE_SPACING_M
    with make_scene("arm", SceneConfig(seed=4, controller=controller)) as scene:  # "home": as before
        scene.control()
        scene.client.resetBasePositionAndOrientation(
            scene.cubes[1], scene._at(1.3, -0.9, 0.025), (0, 0, 0, 1)
        )
        scene.control()
        assert scene.client.getBasePositionAndOrientation(scene.cubes[1])[0][0] - scene.origin[0] > 1.2
