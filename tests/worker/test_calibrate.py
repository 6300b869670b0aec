"""``twin calibrate-detector``: a profile fitted on simulated nominal runs, stored with the model."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from twin.cli import app
from twin.model.checkpoint import load_checkpoint
from twin.worker.calibrate import ReferenceConfig, calibrate_detector
from twin.worker.config import DetectorConfig
from twin.worker.inference import ModelAdapter

SMALL = DetectorConfig(calibration_steps=60)


@pytest.mark.slow
def test_profile_is_fitted_on_nominal_runs_and_travels_with_the_checkpoint(tiny_model: Path, tmp_path: Path):
    path = tmp_path / "model.pt"
    shutil.copy(tiny_model, path)
    before, _ = ModelAdapter.load(str(path)).profile_for(SMALL)
    assert before is None
    reference = ReferenceConfig(runs=3, seconds=14.0, seed=9000, block_steps=30)
    profile, written = calibrate_detector(str(path), SMALL, reference)
    assert written == path
    assert profile.runs == 3 and profile.hours > 0
    assert set(profile.scale) == set(SMALL.statistics)
    assert load_checkpoint(path).detector == profile.to_dict()
    model = ModelAdapter.load(str(path))
    stored, line = model.profile_for(SMALL)
    assert stored == profile and "nominal reference" in line
    other, why = model.profile_for(DetectorConfig(calibration_steps=60, margin=3.0))
    assert other is None and "margin" in why
    # the same seeds give the same profile (runs replay)
    again, _ = calibrate_detector(str(path), SMALL, reference, write=False)
    assert again == profile


def test_cli_says_what_is_wrong_with_too_short_runs(tiny_model: Path):
    args = ["calibrate-detector", str(tiny_model), "--runs", "2", "--seconds", "10"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "make --seconds longer" in result.output
    missing = CliRunner().invoke(app, ["calibrate-detector", "/nonexistent/model.pt", "--db", "sqlite://"])
    assert missing.exit_code == 2 and "no checkpoint file" in missing.output


def test_an_unreadable_stored_profile_is_ignored_not_fatal(tiny_model: Path, tmp_path: Path):
    from twin.model.checkpoint import save_checkpoint

    checkpoint = load_checkpoint(tiny_model)
    checkpoint.detector = {"scale": {"instant": 2.0}, "from_the_future": True}
    path = save_checkpoint(checkpoint, tmp_path / "odd.pt")
    model = ModelAdapter.load(str(path))
    assert model.profile is None
    assert model.profile_for(SMALL)[0] is None


@pytest.mark.slow
def test_twin_up_fits_a_profile_once_for_the_model_it_trains(tmp_path: Path):
    """``twin up``'s cell trains a missing model and fits its detector profile on the preset's
    nominal runs (stored with it); a second start finds both and fits nothing."""
    from twin.cell import PRESETS, ensure_models
    from twin.model.api import checkpoint_path
    from twin.store import make_engine, upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'twin.sqlite'}")
    upgrade(engine)
    # the worker's default detector arms after ~30 s: 122 s runs leave three 30 s blocks each (8 needed)
    preset = dataclasses.replace(PRESETS["tiny"], reference_runs=4, reference_seconds=122.0)
    said: list[str] = []
    refs = ensure_models(["cartpole"], preset, engine, tmp_path / "models", progress=False, say=said.append)
    assert refs == ["cartpole:1"]
    assert any("detector profile" in line for line in said), said
    stored = load_checkpoint(checkpoint_path("cartpole:1", engine)).detector
    assert stored and stored["runs"] == 4
    assert ModelAdapter.load(str(checkpoint_path("cartpole:1", engine))).profile_for(DetectorConfig())[0]
    said.clear()
    assert (
        ensure_models(["cartpole"], preset, engine, tmp_path / "models", progress=False, say=said.append)
        == refs
    )
    assert not any("training" in line or "profile" in line for line in said), said
    with pytest.raises(ValueError, match="reference_runs"):
        dataclasses.replace(preset, reference_runs=1)


def test_twin_up_refits_a_profile_fitted_under_another_detector_config(tiny_model: Path, tmp_path: Path):
    """A model whose stored profile the worker's default detector cannot use (fitted on residuals
    in training stds, before ``residual_units``; or unreadable) counts as having none, so
    ``twin up`` fits it again."""
    from twin.cell import has_profile
    from twin.model.checkpoint import save_checkpoint
    from twin.worker.profile import DetectorProfile, config_key

    checkpoint = load_checkpoint(tiny_model)
    path = tmp_path / "model.pt"
    fitted = DetectorProfile(
        scale={k: 2.0 for k in DetectorConfig().statistics},
        per_hour=0.5,
        hours=1.0,
        runs=4,
        block_steps=900,
        config=config_key(DetectorConfig()),
    )
    for profile, usable in (
        (fitted, True),
        (
            dataclasses.replace(fitted, config=config_key(DetectorConfig(residual_units="training_std"))),
            False,
        ),
        (None, False),
    ):
        checkpoint.detector = profile.to_dict() if profile is not None else None
        save_checkpoint(checkpoint, path)
        assert has_profile(None, str(path)) is usable  # type: ignore[arg-type]
    checkpoint.detector = {"scale": {"instant": 2.0}, "from_the_future": True}
    save_checkpoint(checkpoint, path)
    assert has_profile(None, str(path)) is False  # type: ignore[arg-type]
