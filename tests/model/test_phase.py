"""Phase pairs (``ModelConfig.phase_from``): a latent pair turned through the angle a measured
angular speed sweeps in one control step, its checks, and its save/load round trip."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from modelutil import TINY_RUN, oscillator_data

from twin.model.api import TwinModel
from twin.model.checkpoint import load_checkpoint, save_checkpoint
from twin.model.data import FeatureMap
from twin.model.jepa import ModelConfig, build_model, phase_columns
from twin.model.pipeline import run
from twin.model.predictor import LatentPredictor


def quiet(predictor: LatentPredictor) -> LatentPredictor:
    """The predictor with its MLP's output zeroed: a step is the turn (plus the linear path)."""
    with torch.no_grad():
        predictor.out.weight.zero_()
        predictor.out.bias.zero_()
    return predictor


def rotated(x: torch.Tensor, y: torch.Tensor, angle: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x * torch.cos(angle) - y * torch.sin(angle), x * torch.sin(angle) + y * torch.cos(angle)


def test_a_phase_pair_turns_through_the_angle_its_speed_sweeps_in_one_step():
    torch.manual_seed(0)
    phase = ((5, 0.4, 1.0), (6, 0.1, -0.3))  # speeds in columns 5 and 6 turn pairs (0, 1) and (2, 3)
    predictor = quiet(LatentPredictor(7, 3, 16, 2, "film", phase=phase))
    z, action = torch.randn(10, 7), torch.randn(10, 3)
    out = predictor(z, action)
    for k, (column, scale, offset) in enumerate(phase):
        x, y = rotated(z[:, 2 * k], z[:, 2 * k + 1], scale * z[:, column] + offset)
        assert torch.allclose(out[:, 2 * k], x, atol=1e-6) and torch.allclose(out[:, 2 * k + 1], y, atol=1e-6)
        norm = torch.hypot(z[:, 2 * k], z[:, 2 * k + 1])
        assert torch.allclose(torch.hypot(out[:, 2 * k], out[:, 2 * k + 1]), norm, atol=1e-5)
    assert torch.equal(out[:, 4:], z[:, 4:])  # the rest as it was (the MLP adds nothing here)
    # a rollout turns step by step: two steps at a constant speed turn twice the angle
    two = predictor.unroll(z, predictor_actions(predictor, 2, 10))[:, 1]
    x, y = rotated(z[:, 0], z[:, 1], 2 * (0.4 * z[:, 5] + 1.0))
    assert torch.allclose(two[:, 0], x, atol=1e-5) and torch.allclose(two[:, 1], y, atol=1e-5)


def predictor_actions(predictor: LatentPredictor, steps: int, batch: int) -> torch.Tensor:
    return torch.zeros(batch, steps, predictor.inp.in_features - predictor.out.out_features)


def test_the_turn_takes_the_mean_of_the_speed_now_and_the_linear_paths_next():
    torch.manual_seed(1)
    predictor = quiet(LatentPredictor(5, 2, 16, 2, "film", linear=True, phase=((4, 0.3, 0.2),)))
    with torch.no_grad():
        predictor.lin_z.weight[4, 4] = 0.5  # the linear path's step: the speed grows by half of itself
    z, action = torch.randn(8, 5), torch.zeros(8, 2)
    out = predictor(z, action)
    now, after = z[:, 4], 1.5 * z[:, 4]
    x, y = rotated(z[:, 0], z[:, 1], 0.3 * (now + after) / 2 + 0.2)
    assert torch.allclose(out[:, 0], x, atol=1e-6) and torch.allclose(out[:, 1], y, atol=1e-6)
    assert torch.allclose(out[:, 4], after, atol=1e-6)


def test_phase_pairs_need_room_and_a_speed_column_after_them():
    with pytest.raises(ValueError, match="leading"):
        LatentPredictor(6, 3, 16, 2, "film", phase=((1, 0.1, 0.0),))  # the speed inside the pair
    with pytest.raises(ValueError, match="leading"):
        LatentPredictor(6, 3, 16, 2, "film", phase=((9, 0.1, 0.0),))  # no such column
    LatentPredictor(6, 3, 16, 2, "film", phase=((2, 0.1, 0.0),))


def test_phase_from_names_an_angular_speed_the_encoder_sees(oscillator):
    f = FeatureMap.fit(oscillator)
    sensors = oscillator.schema.sensors  # angle (rad, wrapped), rate (rad/s), position (m)
    config = ModelConfig(latent_dim=8, hidden=16, action_dim=4, history=3, phase_from=("rate",))
    ((column, scale, offset),) = phase_columns(config, f, sensors, 30.0)
    assert column == 8 + 1  # after the learned part, the rate's feature column
    assert scale == pytest.approx(f.std[1] / 30) and offset == pytest.approx(f.mean[1] / 30)
    for name, message in (("angle", "'rad'"), ("position", "'m'"), ("torque", "no sensor named 'torque'")):
        with pytest.raises(ValueError, match=message):
            phase_columns(dataclasses.replace(config, phase_from=(name,)), f, sensors, 30.0)
    with pytest.raises(ValueError, match="carry_observation"):
        ModelConfig(phase_from=("rate",), carry_observation=False)
    with pytest.raises(ValueError, match="distinct"):
        ModelConfig(phase_from=("rate", "rate"))
    with pytest.raises(ValueError, match="learned"):
        ModelConfig(latent_dim=2, phase_from=("a", "b"))
    with pytest.raises(ValueError, match="phase_columns"):
        build_model(config, f.n_features, f.n_sensors, 1)  # the pairs' columns not given
    stored = {k: v for k, v in config.to_dict().items() if k != "phase_from"}
    assert ModelConfig.from_dict(stored).phase_from == ()  # configs from before it: no pairs
    assert ModelConfig.from_dict(config.to_dict()).phase_from == ("rate",)


def test_a_model_with_a_phase_pair_saves_and_loads_to_identical_predictions(tmp_path):
    config = dataclasses.replace(
        TINY_RUN, model=dataclasses.replace(TINY_RUN.model, phase_from=("rate",), linear_path=True)
    )
    torch.manual_seed(0)
    checkpoint = run(oscillator_data(episodes=14, steps=90), config, seed=3)
    loaded = load_checkpoint(save_checkpoint(checkpoint, tmp_path / "m.pt"))
    assert loaded.model.predictor.n_phase == 1
    assert torch.equal(loaded.model.predictor.phase_scale, checkpoint.model.predictor.phase_scale)
    window = oscillator_data(episodes=1, steps=20, seed=9).episodes[0].obs[:3]
    actions = np.linspace(-2, 2, 12)[:, None]
    a, b = TwinModel(checkpoint).forecast(window, actions), TwinModel(loaded).forecast(window, actions)
    assert np.array_equal(a.values, b.values) and np.array_equal(a.high, b.high)
