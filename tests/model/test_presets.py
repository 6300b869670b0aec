"""Per-scene defaults: the arm's measured overrides, the others' global defaults, fields win."""

from __future__ import annotations

import pytest

from twin.model.jepa import ModelConfig
from twin.model.losses import ObjectiveConfig
from twin.model.presets import (
    CAMERA_KEEP_LATER_WITHIN,
    CAMERA_ROLLOUT_STEPS,
    CAMERA_SELECT_WEIGHT,
    CAMERA_TRAIN,
    scene_model,
    scene_objective,
    scene_train,
)
from twin.model.train import TrainConfig


def test_arm_sensor_runs_get_its_overrides() -> None:
    assert scene_model("arm").linear_path is True
    assert scene_model("arm").input_clip == 4.0
    assert scene_model("arm", camera=True, camera_only=("cube",)).input_clip == 0.0
    assert scene_objective("arm").sensor_loss == "huber"


def test_rotor_sensor_runs_turn_a_phase_pair_by_the_speed_with_a_log_term_over_50_steps() -> None:
    # the phase pair and the linear path, nothing else
    assert scene_model("rotor") == ModelConfig(phase_from=("speed",), linear_path=True)
    assert scene_objective("rotor") == ObjectiveConfig(sensor_loss="mse+log_mse", rollout_steps=50)
    assert scene_model("rotor", camera=True) == ModelConfig(camera=True)  # a camera run: the defaults
    assert scene_objective("rotor", camera=True).sensor_loss == ObjectiveConfig().sensor_loss


@pytest.mark.parametrize("scene", ["cartpole", "unknown-scene"])
def test_other_scenes_get_the_global_defaults(scene: str) -> None:
    assert scene_model(scene) == ModelConfig()
    assert scene_objective(scene) == ObjectiveConfig()


def test_camera_runs_get_the_camera_overrides_and_unroll_less() -> None:
    model = scene_model("arm", camera=True, camera_only=("cube",))
    assert model.linear_path is False and model.camera_only == ("cube",)
    assert model.camera_reader == "keypoints"  # the arm's camera: keypoints only
    assert model.camera_keypoints >= 4 * 3  # spare maps for its three cubes (test_parts: why)
    assert model.camera_dims == 16
    assert (model.keypoint_pooling, model.camera_readout) == ("presence", "linear")
    assert model.camera_frames == model.history == 4  # a cube hidden for a frame or two is still read
    assert scene_model("cartpole", camera=True).camera_reader == "cnn"
    # a camera beside all the sensors (`twin train --camera`), or camera-only (it must show the
    # arm too, not only coloured cubes): the global defaults
    assert scene_model("arm", camera=True) == ModelConfig(camera=True)
    assert scene_model("arm", camera=True, sensors=False, carry_observation=False).camera_reader == "cnn"
    objective = scene_objective("arm", camera=True)
    assert objective.rollout_steps == CAMERA_ROLLOUT_STEPS
    assert objective.select_weight == CAMERA_SELECT_WEIGHT > 1  # what the run selects on weighs more
    assert objective.sensor_loss == ObjectiveConfig().sensor_loss


def test_explicit_fields_override_the_scene() -> None:
    assert scene_model("arm", linear_path=False, input_clip=0.0, hidden=64) == ModelConfig(hidden=64)
    assert scene_objective("arm", sensor_loss="mse", rollout_steps=4) == ObjectiveConfig(rollout_steps=4)


def test_training_is_the_default_budget_annealed_by_time_and_camera_runs_take_smaller_batches() -> None:
    assert scene_train() == TrainConfig(anneal_by_time=True)  # 3,000 steps, the 480 s guard
    camera = scene_train(camera=True)
    assert camera.batch == CAMERA_TRAIN["batch"] < TrainConfig().batch
    assert (camera.steps, camera.keep_later_within) == (TrainConfig().steps, 0.0)
    # a camera that shows what the sensors do not: a near-tie goes to the later weights
    assert scene_train(camera=True, camera_only=("cube",)).keep_later_within == CAMERA_KEEP_LATER_WITHIN > 0
    fields = scene_train(camera=True, camera_only=("cube",), steps=10, seed=3, batch=8, anneal_by_time=False)
    assert (fields.steps, fields.seed, fields.batch, fields.anneal_by_time) == (10, 3, 8, False)


def test_an_invalid_field_is_refused_by_the_config() -> None:
    with pytest.raises(ValueError, match="sensor_loss"):
        scene_objective("cartpole", sensor_loss="l7")
    with pytest.raises(ValueError, match="steps"):
        scene_train(steps=0)


def test_camera_data_of_the_arm_places_cubes_anywhere_and_its_lineage_says_so() -> None:
    from twin.model.generate import GenerateConfig

    camera = GenerateConfig("arm", 2, camera=True)
    assert camera.scene_options == {"cubes": "tray", "meshes": "coarse"}
    assert camera.lineage()["options"] == {"cubes": "tray", "meshes": "coarse"}
    assert GenerateConfig("arm", 2).lineage()["options"] == {}  # sensor runs: as before
    assert GenerateConfig("arm", 2, camera=True, options={}).scene_options == {}  # explicit wins


def test_default_episodes_camera_runs_generate_fewer() -> None:
    from twin.model.generate import SCENE_CAMERA_EPISODES, SCENE_EPISODES, default_episodes

    for scene in ("cartpole", "rotor", "arm"):
        assert default_episodes(scene) == SCENE_EPISODES[scene]
        assert 0 < default_episodes(scene, camera=True) < default_episodes(scene)
    assert default_episodes("arm", camera=True) == SCENE_CAMERA_EPISODES["arm"]  # what the bench measures
    assert default_episodes("cartpole", camera=True) == SCENE_EPISODES["cartpole"] // 3
    assert (default_episodes("unknown-scene"), default_episodes("unknown-scene", camera=True)) == (200, 66)


def test_a_lineage_written_before_scene_options_regenerates_the_home_placement() -> None:
    from twin.model.generate import GenerateConfig
    from twin.model.jobs import data_from_lineage

    lineage = GenerateConfig("arm", 1, steps=2, camera=True).lineage()
    tray = data_from_lineage(lineage)
    del lineage["options"]  # as stored before options existed
    old = data_from_lineage(lineage)
    assert old.lineage["options"] == {} and tray.lineage["options"] == {"cubes": "tray", "meshes": "coarse"}
    names = [s.name for s in old.schema.sensors]
    x = names.index("cube0_x")
    assert abs(old.episodes[0].obs[0, x] - 0.55) <= 0.03 + 1e-6  # cube 0's home, +- 3 cm
    assert old.episodes[0].frames.shape == (3, 64, 64, 3)


@pytest.mark.parametrize(("scene", "camera"), [("cartpole", False), ("arm", True)])
def test_generation_in_two_processes_gives_the_same_data_as_in_one(scene: str, camera: bool) -> None:
    """One process per controller, the random draws made up front: the episodes (observations,
    actions, frames, ground truth) are bit-identical to a single process's, in the same order."""
    import numpy as np

    from twin.model.generate import GenerateConfig, generate

    config = GenerateConfig(scene, 5, steps=12, seed=4, camera=camera)
    one, two = generate(config, workers=1), generate(config, workers=2)
    assert len(one.episodes) == len(two.episodes) == 5
    for a, b in zip(one.episodes, two.episodes, strict=True):
        for x, y in ((a.obs, b.obs), (a.actions, b.actions), (a.frames, b.frames), (a.extra, b.extra)):
            assert (x is None and y is None) or np.array_equal(x, y)
    assert not np.array_equal(one.episodes[0].actions, one.episodes[2].actions)  # not one episode, repeated
    with pytest.raises(ValueError, match="workers"):
        generate(config, workers=3)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (("cartpole", 3, 12, False, None), "a8db27ffdecd96ee"),
        (("arm", 3, 12, True, {"cubes": "table"}), "c9cb768230db6f82"),
        (("arm", 3, 12, True, {"cubes": "tray"}), "60e0312d3761d972"),
        (("arm", 3, 12, True, None), "ed83c37ae08d7143"),
    ],
)
def test_generated_data_are_the_data_stored_lineages_were_trained_on(config, expected) -> None:
    """A lineage regenerates its data (``data_from_lineage``): these digests were computed with
    the single-process generator of dfc366a, before generation ran in two processes (camera
    runs of the arm then placed the cubes on the open table, as lineages of theirs still say);
    the tray's with that of 2e5fe5a (the invisible floor, out of the camera's sight, changed no
    pixel); coarse meshes (camera runs' default since) with that of their commit; sensor values
    rounded to 1e-9, frames exact."""
    import hashlib

    import numpy as np

    from twin.model.generate import GenerateConfig, generate

    scene, episodes, steps, camera, options = config
    for workers in (1, 2):
        spec = GenerateConfig(scene, episodes, steps=steps, seed=4, camera=camera, options=options)
        data = generate(spec, workers=workers)
        digest = hashlib.sha256()
        for e in data.episodes:
            for a in (e.obs, e.actions, e.extra):
                if a is not None:
                    digest.update(np.round(a, 9).tobytes())
            if e.frames is not None:
                digest.update(e.frames.tobytes())
        assert digest.hexdigest()[:16] == expected, workers
