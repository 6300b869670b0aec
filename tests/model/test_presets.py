"""Per-scene defaults: the arm's measured overrides, the others' global defaults, fields win."""

from __future__ import annotations

import pytest

from twin.model.jepa import ModelConfig
from twin.model.losses import ObjectiveConfig
from twin.model.presets import CAMERA_ROLLOUT_STEPS, scene_model, scene_objective


def test_arm_sensor_runs_get_its_overrides() -> None:
    assert scene_model("arm").linear_path is True
    assert scene_objective("arm").sensor_loss == "huber"


@pytest.mark.parametrize("scene", ["cartpole", "rotor", "unknown-scene"])
def test_other_scenes_get_the_global_defaults(scene: str) -> None:
    assert scene_model(scene) == ModelConfig()
    assert scene_objective(scene) == ObjectiveConfig()


def test_camera_runs_keep_the_global_model_and_unroll_less() -> None:
    model = scene_model("arm", camera=True, camera_only=("cube",))
    assert model.linear_path is False and model.camera_only == ("cube",)
    objective = scene_objective("arm", camera=True)
    assert objective.rollout_steps == CAMERA_ROLLOUT_STEPS
    assert objective.sensor_loss == ObjectiveConfig().sensor_loss


def test_explicit_fields_override_the_scene() -> None:
    assert scene_model("arm", linear_path=False, hidden=64) == ModelConfig(hidden=64)
    assert scene_objective("arm", sensor_loss="mse", rollout_steps=4) == ObjectiveConfig(rollout_steps=4)


def test_an_invalid_field_is_refused_by_the_config() -> None:
    with pytest.raises(ValueError, match="sensor_loss"):
        scene_objective("cartpole", sensor_loss="l7")
