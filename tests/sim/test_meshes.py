"""Coarse visual meshes (sim/meshes.py) and the arm's ``meshes`` option: fewer triangles, a
faster frame that looks like the full one, and physics that does not change."""

from __future__ import annotations

import os

import numpy as np
import pytest

from sim.meshes import coarse_obj_text, coarse_urdf, read_obj, vertex_normals


def _kuka(data_path: str) -> str:
    return os.path.join(data_path, "kuka_iiwa/model.urdf")


def test_read_obj_fans_polygons_and_resolves_negative_indices(tmp_path) -> None:
    obj = tmp_path / "quad.obj"
    obj.write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvn 0 0 1\nf 1//1 2//1 3//1 4//1\nf -4 -2 -1\n")
    v, t = read_obj(str(obj))
    assert v.shape == (4, 3)
    assert t.tolist() == [[0, 1, 2], [0, 2, 3], [0, 2, 3]]


def test_read_obj_says_which_line_is_bad(tmp_path) -> None:
    obj = tmp_path / "bad.obj"
    obj.write_text("v 0 0 0\nv 1 0 0\nf 1 2\n")
    with pytest.raises(ValueError, match=r"bad.obj:3: a face needs 3 corners"):
        read_obj(str(obj))
    obj.write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nf 1 2 9\n")
    with pytest.raises(ValueError, match=r"outside 1..3"):
        read_obj(str(obj))


def test_vertex_normals_of_a_flat_square_point_up_and_are_unit() -> None:
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [5, 5, 5]], dtype=float)
    t = np.array([[0, 1, 2], [0, 2, 3]])
    n = vertex_normals(v, t)
    np.testing.assert_allclose(n[:4], [[0, 0, 1]] * 4)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0)  # the lone vertex too


def test_a_coarse_link_keeps_about_the_asked_share_of_its_triangles_and_its_extent(data_path) -> None:
    source = os.path.join(data_path, "kuka_iiwa/meshes/link_1.obj")
    v, t = read_obj(source)
    text = coarse_obj_text(source, 0.1)
    n_faces = sum(1 for line in text.splitlines() if line.startswith("f "))
    assert 0.05 * len(t) <= n_faces <= 0.15 * len(t)
    rows = [line.split()[1:] for line in text.splitlines() if line.startswith("v ")]
    coarse_v = np.array(rows, dtype=float)
    np.testing.assert_allclose(coarse_v.min(0), v.min(0), atol=0.01)  # the same link, within 1 cm
    np.testing.assert_allclose(coarse_v.max(0), v.max(0), atol=0.01)
    with pytest.raises(ValueError, match="keep"):
        coarse_obj_text(source, 0.0)


def test_coarse_urdf_replaces_only_visual_meshes(data_path, tmp_path) -> None:
    path = coarse_urdf(_kuka(data_path), 0.1, str(tmp_path))
    with open(path) as f:
        text = f.read()
    assert os.path.join(data_path, "kuka_iiwa", "meshes", "link_1.stl") in text  # collision: the original
    assert "meshes/link_1.obj" not in text  # the visual now points at the decimated copy
    assert len(list(tmp_path.glob("visual_*.obj"))) == 8
    box = "<visual><geometry><box size='1 1 1'/></geometry></visual>"
    (tmp_path / "plain.urdf").write_text(f"<robot name='r'><link name='a'>{box}</link></robot>")
    with pytest.raises(ValueError, match="no visual OBJ mesh"):
        coarse_urdf(str(tmp_path / "plain.urdf"), 0.1, str(tmp_path))


def _run(options: dict[str, str], steps: int = 40) -> tuple[np.ndarray, np.ndarray]:
    from sim.registry import make_scene
    from sim.scene import SceneConfig

    scene = make_scene("arm", SceneConfig(seed=3, options=options))
    try:
        scene.reset(3)
        obs, frames = [], []
        for _ in range(steps):
            action = scene.control()
            for _ in range(8):
                scene.step(action)
            obs.append(scene.observe())
            frames.append(scene.camera()[0])
        return np.asarray(obs), np.asarray(frames)
    finally:
        scene.close()


def test_the_arm_with_coarse_meshes_moves_exactly_as_with_full_ones_and_looks_alike() -> None:
    full_obs, full_frames = _run({"cubes": "tray"})
    coarse_obs, coarse_frames = _run({"cubes": "tray", "meshes": "coarse"})
    np.testing.assert_array_equal(coarse_obs, full_obs)  # physics: bit for bit
    diff = np.abs(coarse_frames.astype(int) - full_frames.astype(int))
    assert diff.any()  # the robot is drawn differently...
    assert diff.mean() < 1.5  # ...but the frame is the same scene (0-255 scale)
    assert (diff.sum(-1) > 60).mean() < 0.02  # few pixels change visibly: the arm's edges


def test_the_arm_refuses_an_unknown_mesh_detail() -> None:
    from sim.registry import make_scene
    from sim.scene import SceneConfig

    with pytest.raises(ValueError, match=r"options\['meshes'\]='fine' must be one of"):
        make_scene("arm", SceneConfig(options={"meshes": "fine"}))
