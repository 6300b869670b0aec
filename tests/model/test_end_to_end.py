"""Short end-to-end runs on generated cartpole data, through the jobs and the CLI (slow tier)."""

from __future__ import annotations

import json

import pytest
import torch
from modelutil import TINY_RUN, oscillator_data

from twin.model.jepa import ModelConfig
from twin.model.losses import ObjectiveConfig
from twin.model.pipeline import RunConfig
from twin.model.train import TrainConfig

pytestmark = pytest.mark.slow


def test_short_training_on_cartpole_beats_persistence_at_10_steps(jumeau_home, tmp_path):
    from twin.model.jobs import DataSpec, eval_job, load_data, train_job

    torch.manual_seed(0)
    data = load_data(DataSpec("cartpole", generate=24, steps=150, seed=0))
    config = RunConfig(
        model=ModelConfig(latent_dim=16, hidden=64),
        objective=ObjectiveConfig(rollout_steps=8),
        train=TrainConfig(steps=250, batch=128, eval_every=125),
        neural_baselines=False,
        val_windows=200,
    )
    outcome = train_job(data, config, seed=0, name="cartpole-test", models_dir=tmp_path)
    nrmse = outcome.checkpoint.metrics["nrmse"]
    assert nrmse["jepa"]["10"] < nrmse["persistence"]["10"]
    assert outcome.path.exists()
    metrics = eval_job("cartpole-test", tmp_path / "plot.png")
    assert metrics["nrmse"]["jepa"] == nrmse["jepa"]  # same held-out episodes, same numbers
    assert (tmp_path / "plot.png").stat().st_size > 10_000


def test_twin_train_and_eval_commands(jumeau_home):
    from typer.testing import CliRunner

    from twin.cli import app

    runner = CliRunner()
    result = runner.invoke(
        app, ["train", "--scene", "rotor", "--generate", "6", "--steps", "30", "--seed", "2"]
    )
    assert result.exit_code == 0, result.output
    assert "persistence" in result.output and "checkpoint" in result.output
    result = runner.invoke(app, ["eval", "rotor", "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output.strip().splitlines()[-1])
    rows = {"jepa", "jepa_unblended", "persistence", "const_velocity", "linear", "mlp", "gru"}
    assert set(metrics["nrmse"]) == rows  # the model with its horizon blend, and without it
    result = runner.invoke(app, ["eval", "no-such-model"])
    assert result.exit_code == 2 and "no-such-model" in result.output


def test_held_out_splits_a_checkpoints_data_with_the_seed_it_was_trained_with(jumeau_home, tmp_path):
    """A seed-2 run's test episodes and normalisation, not seed 0's (the bench's camera probe
    once split every checkpoint's data with seed 0)."""
    import numpy as np

    from twin.model.checkpoint import load_checkpoint
    from twin.model.jobs import DataSpec, held_out, load_data, train_job
    from twin.model.pipeline import prepare

    data = load_data(DataSpec("rotor", generate=8, steps=120, seed=2))
    config = TINY_RUN
    outcome = train_job(data, config, seed=2, name="rotor-split", models_dir=tmp_path)
    checkpoint = load_checkpoint(outcome.path)
    prepared = held_out(checkpoint, data)
    assert np.array_equal(prepared.features.mean, checkpoint.features.mean)
    starts = [e.obs[0].tolist() for e in prepared.splits.test.episodes]  # each episode's first sample
    assert len(starts) == checkpoint.lineage["episodes_test"]
    other = prepare(data, config, 0)
    assert [e.obs[0].tolist() for e in other.splits.test.episodes] != starts
    assert not np.array_equal(other.features.mean, checkpoint.features.mean)


def test_twin_train_learns_named_sensors_from_the_camera_only(jumeau_home):
    """``--from-camera cube``: the arm's cubes from frames (placed anywhere on the table), its
    joints from its sensors, with the camera preset of such runs; bad prefixes are refused."""
    import numpy as np
    from typer.testing import CliRunner

    from twin.cli import app
    from twin.model.api import TwinModel
    from twin.model.checkpoint import load_checkpoint
    from twin.model.presets import SCENE_CAMERA_MODEL
    from twin.settings import home

    runner = CliRunner()
    args = ["train", "--scene", "arm", "--generate", "6", "--steps", "10", "--name", "arm-cubes"]
    result = runner.invoke(app, [*args, "--from-camera", "cube"])
    assert result.exit_code == 0, result.output
    checkpoint = load_checkpoint(next((home() / "models").glob("arm-cubes-v1*")))
    model = checkpoint.config["model"]
    assert model["camera"] and model["sensors"] and list(model["camera_only"]) == ["cube"]
    assert model["camera_reader"] == "keypoints" and model["camera_dims"] == 16
    train = checkpoint.config["train"]
    assert (train["keep_later_within"], train["batch"], train["anneal_by_time"]) == (0.01, 32, True)
    assert checkpoint.config["select_horizons"] == [10]  # presets.CAMERA_SELECT_HORIZONS
    assert checkpoint.lineage["options"] == {"cubes": "tray", "meshes": "coarse"}
    frames = SCENE_CAMERA_MODEL["arm"]["camera_frames"]
    assert model["camera_frames"] == frames and model["history"] >= frames
    twin = TwinModel(checkpoint)  # the public API reads the model's frames, the latest last
    window = np.tile(checkpoint.features.mean, (twin.history, 1))
    shown = np.random.default_rng(0).integers(0, 255, (frames, 64, 64, 3), dtype=np.uint8)
    assert twin.encode(window, shown).shape == (checkpoint.model.z_dim,)
    with pytest.raises(ValueError, match=f"frames must be \\({frames}, 64, 64, 3\\)"):
        twin.encode(window, shown[-1:])
    result = runner.invoke(app, [*args, "--from-camera", "nope"])
    assert result.exit_code == 2 and "no sensor of arm starts with" in result.output
    result = runner.invoke(app, [*args, "--from-camera", "cube", "--camera-only"])
    assert result.exit_code == 2


def test_fine_tuning_weighs_the_sensors_the_run_selected_on(jumeau_home, tmp_path):
    """The worker's fine-tuning trains with the checkpoint's own objective, ``select_on``'s
    feature weights included: the same checkpoint with its selection dropped tunes differently."""
    import dataclasses

    import numpy as np

    from twin.model.checkpoint import load_checkpoint
    from twin.model.jobs import train_job
    from twin.worker.adapt import Segment, fine_tune
    from twin.worker.config import AdaptConfig

    data = oscillator_data(episodes=12, steps=120)
    objective = dataclasses.replace(TINY_RUN.objective, select_weight=4.0)
    config = dataclasses.replace(TINY_RUN, objective=objective, select_on=("position",))
    checkpoint = load_checkpoint(train_job(data, config, seed=0, name="osc-select", models_dir=tmp_path).path)
    assert list(checkpoint.config["select_on"]) == ["position"]
    assert checkpoint.config["objective"]["select_weight"] == 4.0
    step_ns = 33_333_333
    segments = {
        "osc-0": [
            Segment(np.arange(e.steps + 1, dtype=np.int64) * step_ns + k * 10**12, e.obs, e.actions, False)
            for k, e in enumerate(data.episodes[:4])
        ]
    }
    adapt = AdaptConfig(train_steps=3, batch=8, rollout_steps=4, min_steps=10, buffer_steps=100)
    selected = fine_tune(checkpoint, segments, adapt)
    unselected = dataclasses.replace(checkpoint, config={**checkpoint.config, "select_on": []})
    plain = fine_tune(unselected, segments, adapt)
    assert selected["model"] is not None and plain["model"] is not None
    assert selected["loss_first"] != plain["loss_first"]  # the same first batch, weighed otherwise
    again = fine_tune(checkpoint, segments, adapt)
    assert again["loss_first"] == selected["loss_first"]  # seeded: only the weights differ
