"""Quaternion features (sign-invariant), gentler arm actions, and the hours-ahead thermal model."""

from __future__ import annotations

import numpy as np
import pytest

from bridge import ActuatorSpec, SensorSpec, StreamSchema
from twin.model.data import Dataset, Episode, FeatureMap, quaternion_groups
from twin.model.generate import GenerateConfig
from twin.model.slow import MinuteSeries, ThermalForecaster, time_to_limit


def pose_data(seed: int = 0) -> Dataset:
    """A body yawing around z whose quaternion comes with a random sign at every step."""
    sensors = (SensorSpec("x", "m", -1, 1), *tuple(SensorSpec(f"body_q{a}", "1", -1, 1) for a in "xyzw"))
    schema = StreamSchema(
        "pose-0", "state", "vector", "<f8", (5,), 30.0, sensors, (ActuatorSpec("u", "1", -1, 1),)
    )
    rng = np.random.default_rng(seed)
    yaw = np.linspace(-1.0, 1.0, 61)
    q = np.stack([np.zeros_like(yaw), np.zeros_like(yaw), np.sin(yaw / 2), np.cos(yaw / 2)], axis=1)
    q *= rng.choice([-1.0, 1.0], size=(len(yaw), 1))
    obs = np.concatenate([yaw[:, None] / 2, q], axis=1)
    return Dataset(schema, (Episode(obs, np.zeros((60, 1))),))


def test_quaternions_are_found_and_their_sign_does_not_matter():
    data = pose_data()
    assert quaternion_groups(data.schema).tolist() == [[1, 2, 3, 4]]
    f = FeatureMap.fit(data)
    obs = data.episodes[0].obs
    flipped = obs.copy()
    flipped[:, 1:] *= -1
    np.testing.assert_allclose(f.features(obs), f.features(flipped), atol=1e-6)
    assert np.abs(np.diff(f.features(obs)[:, 1:5], axis=0)).max() < 1.0  # continuous: a sign jump is ~20
    np.testing.assert_allclose(f.normalised_error(flipped, obs), 0.0, atol=1e-9)
    assert np.abs(f.normalised_error(obs[::-1], obs)).max() > 0.5  # a different yaw still errs


def test_feature_map_without_quaternions_loads_from_an_old_dict():
    f = FeatureMap.fit(pose_data())
    old = {k: v for k, v in f.to_dict().items() if not k.startswith("quaternion")}
    restored = FeatureMap.from_dict(old)
    assert restored.quaternions.shape == (0, 4)
    assert FeatureMap.from_dict(f.to_dict()).quaternions.tolist() == [[1, 2, 3, 4]]


def test_generate_config_scene_defaults_and_validation():
    assert GenerateConfig("arm", 1).push == 0.3 and GenerateConfig("arm", 1).rate == 0.1
    assert GenerateConfig("cartpole", 1).push == 1.0 and GenerateConfig("cartpole", 1).rate == 0.0
    assert GenerateConfig("arm", 1, push_max=1.0, action_rate=0.0).rate == 0.0
    with pytest.raises(ValueError, match="action_rate"):
        GenerateConfig("arm", 1, action_rate=-1.0)


def heating_run(minutes: int, wear: float, seed: int = 0) -> MinuteSeries:
    """Minute-rate bearing: dT = a (T_amb - T) + c(t) |w| + b w^2, c growing with hours."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(50, 250, minutes)
    hours = np.arange(1, minutes + 1) / 60
    temp, t = np.empty(minutes), 293.0
    for k in range(minutes):
        t = t + 0.1 * (293.0 - t) + 0.005 * (1 + wear * hours[k]) * w[k] + 2e-5 * w[k] ** 2
        temp[k] = t
    return MinuteSeries(temp, w, w**2, hours)


def test_thermal_forecaster_learns_wear_and_time_to_limit():
    train, test = heating_run(240, 0.5, seed=0), heating_run(480, 0.5, seed=1)
    plan = test.slice(121)
    start = test.temperature[120]
    with_wear = ThermalForecaster.fit(train).forecast(start, plan)
    without = ThermalForecaster.fit(train, wear=False).forecast(start, plan)
    assert np.abs(with_wear - plan.temperature).max() < 0.05
    assert np.abs(without - plan.temperature).max() > 1.0
    assert time_to_limit(np.array([300.0, 310.0, 320.0]), 310.0) == 2.0
    assert time_to_limit(np.array([300.0]), 310.0) is None


def test_minute_series_from_samples():
    speed = np.tile([-2.0, 2.0], 60)  # 2 minutes at 1 Hz
    series = MinuteSeries.from_samples(speed, np.arange(120.0), rate_hz=1.0)
    assert len(series) == 2
    np.testing.assert_allclose(series.speed_abs, 2.0)
    np.testing.assert_allclose(series.temperature, [59.0, 119.0])
    with pytest.raises(ValueError, match="2 minutes"):
        MinuteSeries.from_samples(speed[:60], np.arange(60.0), rate_hz=1.0)


def test_camera_only_sensors_are_hidden_from_the_encoder():
    import torch

    from twin.model.jepa import ModelConfig, build_model, camera_only_columns

    data = pose_data()
    f = FeatureMap.fit(data)
    names = [s.name for s in data.schema.sensors]
    config = ModelConfig(latent_dim=8, hidden=16, camera=True, camera_only=["body"])
    assert config.camera_only == ("body",)
    columns = camera_only_columns(config, f, names)
    assert columns == (1, 2, 3, 4)
    torch.manual_seed(0)
    model = build_model(config, f.n_features, f.n_sensors, 1, columns)
    window = torch.randn(2, config.history, f.n_features)
    frames = torch.zeros(2, 2, 3, 64, 64, dtype=torch.uint8)
    changed = window.clone()
    changed[..., 1:5] += 5.0
    changed_seen = window.clone()
    changed_seen[..., 0] += 5.0
    with torch.no_grad():
        assert torch.equal(model.encode(window, frames), model.encode(changed, frames))
        assert not torch.equal(model.encode(window, frames), model.encode(changed_seen, frames))
    with pytest.raises(ValueError, match="camera_only"):
        camera_only_columns(ModelConfig(camera=True, camera_only=("cube",)), f, names)
    with pytest.raises(ValueError, match="needs camera"):
        ModelConfig(camera_only=("body",))
