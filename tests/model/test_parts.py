"""Shapes, features, losses and the world-model protocol, on tiny seeded CPU tensors."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch

from twin.model.data import FeatureMap, make_windows, split_episodes
from twin.model.jepa import JepaWorldModel, ModelConfig, WorldModel, build_model, camera_only_columns
from twin.model.losses import (
    JepaObjective,
    ObjectiveConfig,
    SensorResidual,
    effective_rank,
    latent_health,
    vicreg_covariance,
    vicreg_variance,
)
from twin.model.train import TrainConfig, Trainer


def small_model(f: FeatureMap, **kw) -> JepaWorldModel:
    torch.manual_seed(0)
    kw.setdefault("carry_observation", False)  # the plain latent; carrying has its own test
    config = ModelConfig(latent_dim=8, hidden=16, action_dim=4, history=3, **kw)
    return build_model(config, f.n_features, f.n_sensors, len(f.action_low))


def test_feature_map_round_trip_wraps_angles(oscillator):
    f = FeatureMap.fit(oscillator)
    assert f.periodic.tolist() == [True, False, False]
    assert f.n_features == 5
    obs = oscillator.episodes[0].obs
    assert np.allclose(f.values(f.features(obs)), obs, atol=1e-5)
    # a prediction of +pi - 0.01 for an observed -pi + 0.01 is 0.02 rad off, not 2*pi - 0.02
    err = f.normalised_error(np.array([math.pi - 0.01, 0, 0]), np.array([-math.pi + 0.01, 0, 0]))
    assert abs(err[0] * f.std[0]) == pytest.approx(0.02, abs=1e-9)
    assert np.all(np.abs(f.actions(np.array([[-2.0], [2.0]]))) == 1.0)


def test_windows_and_split(oscillator):
    splits = split_episodes(oscillator, seed=0)
    sizes = [len(s.episodes) for s in (splits.train, splits.val, splits.calib, splits.test)]
    assert sum(sizes) == len(oscillator.episodes) and min(sizes) >= 1
    f = FeatureMap.fit(splits.train)
    w = make_windows(splits.train, f, history=3, horizon=5)
    assert w.features.shape[1:] == (8, 5) and w.actions.shape[1:] == (5, 1) and w.obs.shape[1:] == (8, 3)
    assert len(w) == len(splits.train.episodes) * (120 + 1 - 8 + 1)


def test_model_shapes_protocol_and_repr(oscillator):
    f = FeatureMap.fit(oscillator)
    model = small_model(f)
    assert isinstance(model, WorldModel)
    feats = torch.randn(6, 3, f.n_features)
    z = model.encode(feats)
    assert z.shape == (6, 8)
    assert model.next(z, torch.zeros(6, 1)).shape == (6, 8)
    assert model.rollout(z, torch.zeros(6, 7, 1)).shape == (6, 7, 8)
    assert model.read(z).shape == (6, f.n_features)
    assert model.error_scale(z).shape == (6, f.n_sensors) and bool((model.error_scale(z) > 0).all())
    assert model.forecast_features(feats, None, torch.zeros(6, 4, 1)).shape == (6, 4, f.n_features)
    total = sum(p.numel() for p in model.parameters())
    assert f"params={total:,}" in repr(model)


def test_camera_encoder_shapes(oscillator):
    f = FeatureMap.fit(oscillator)
    model = small_model(f, camera=True, sensors=False)
    frames = torch.randint(0, 255, (2, 2, 3, 64, 64), dtype=torch.uint8)
    assert model.encode(torch.zeros(2, 3, f.n_features), frames).shape == (2, 8)
    with pytest.raises(ValueError, match="camera frames"):
        model.encode(torch.zeros(2, 3, f.n_features))


def test_configs_validate():
    with pytest.raises(ValueError, match="latent_dim"):
        ModelConfig(latent_dim=0)
    with pytest.raises(ValueError, match="sensors=False"):
        ModelConfig(sensors=False)
    with pytest.raises(ValueError, match="ema_tau"):
        ObjectiveConfig(ema_tau=1.0)
    with pytest.raises(ValueError, match="rollout_steps"):
        ObjectiveConfig(rollout_steps=0)


@pytest.mark.parametrize("by_time", [False, True])
def test_learning_rate_anneals_by_steps_or_by_the_time_budget(by_time):
    config = TrainConfig(steps=1000, lr=1e-3, warmup=10, max_seconds=100.0, anneal_by_time=by_time)
    trainer = Trainer(config, objective=None, train=None, validate=lambda: 0.0)  # type: ignore[arg-type]
    assert trainer._lr(0) == pytest.approx(1e-4)  # warm-up
    assert trainer._lr(999) == pytest.approx(5e-5, rel=1e-3)  # end of the cosine: 5% of lr
    # A tenth of the steps done but the whole time budget used (a loaded machine): only the
    # time-annealed schedule has come down to its floor.
    late = trainer._lr(100, elapsed=100.0)
    assert late == (pytest.approx(5e-5) if by_time else pytest.approx(trainer._lr(100)))
    assert trainer._lr(100, elapsed=1.0) == pytest.approx(trainer._lr(100))  # early: by steps
    # a run with time to spare anneals by its steps alone, whatever the clock says: repeatable
    assert trainer._lr(150, elapsed=7.0) == trainer._lr(150, elapsed=9.0) == trainer._lr(150)
    if not by_time:
        assert late > 9e-4


def test_vicreg_terms_and_effective_rank():
    torch.manual_seed(0)
    wide = torch.randn(512, 8) * 2.0
    assert float(vicreg_variance(wide)) == 0.0
    assert float(vicreg_variance(torch.zeros(512, 8))) == pytest.approx(1.0 - 0.01, abs=1e-3)
    correlated = torch.randn(512, 1).repeat(1, 8)
    assert float(vicreg_covariance(correlated)) > 10 * float(vicreg_covariance(torch.randn(512, 8)))
    assert effective_rank(torch.randn(2000, 8)) > 7.0
    assert effective_rank(correlated) < 1.5
    health = latent_health(wide)
    assert health["dim"] == 8 and health["dims_below_0.01"] == 0 and len(health["std_per_dim"]) == 8


def test_sensor_residual_matches_numpy(oscillator):
    f = FeatureMap.fit(oscillator)
    obs = oscillator.episodes[1].obs[:50]
    pred = obs + np.array([0.3, 0.1, -0.2])
    pred[:, 0] = (pred[:, 0] + math.pi) % (2 * math.pi) - math.pi
    torch_res = SensorResidual(f)(torch.from_numpy(f.features(pred)), torch.from_numpy(f.features(obs)))
    assert np.allclose(torch_res.numpy(), f.normalised_error(pred, obs), atol=1e-4)


def _latent_std_after_training(oscillator, var_weight: float) -> float:
    """Latent-prediction loss only (no readout, no inverse dynamics, no EMA, gradients into the
    target side): a constant latent minimises it; only the regulariser stands in its way."""
    f = FeatureMap.fit(oscillator)
    model = small_model(f)
    config = ObjectiveConfig(
        rollout_steps=3,
        latent_weight=1.0,
        sensor_weight=0,
        recon_weight=0,
        one_step_weight=0,
        inverse_weight=0,
        scale_weight=0,
        readout_through=True,
        var_weight=var_weight,
        cov_weight=0.04 * var_weight,
        ema_tau=0.0,
        stop_gradient=False,
    )
    objective = JepaObjective(model, config, f)
    windows = make_windows(oscillator, f, 3, 3)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(60):
        loss, _ = objective.loss(windows.take(torch.randint(len(windows), (128,), generator=generator)))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        return float(model.encode(windows.features[:, :3]).std(dim=0).mean())


def test_regulariser_prevents_collapse(oscillator):
    with_reg = _latent_std_after_training(oscillator, var_weight=1.0)
    without = _latent_std_after_training(oscillator, var_weight=0.0)
    assert with_reg > 0.8  # VICReg's hinge holds every dimension's std near 1
    assert without < 0.05  # from ~0.04 at initialisation, every latent shrinks to one point


def test_objective_terms_are_finite(oscillator):
    f = FeatureMap.fit(oscillator)
    windows = make_windows(oscillator, f, 3, 4).take(np.arange(32))
    total, stats = JepaObjective(small_model(f), ObjectiveConfig(rollout_steps=4), f).loss(windows)
    assert math.isfinite(float(total.detach()))
    assert {"latent", "variance", "covariance", "inverse", "recon", "sensor", "scale", "latent_std"} <= set(
        stats
    )


@pytest.mark.parametrize("through", [True, False])
def test_readout_gradient_reaches_encoder_only_when_trained_through(oscillator, through):
    f = FeatureMap.fit(oscillator)
    windows = make_windows(oscillator, f, 3, 4).take(np.arange(32))
    model = small_model(f)
    only_readout = ObjectiveConfig(
        rollout_steps=4,
        latent_weight=0,
        var_weight=0,
        cov_weight=0,
        inverse_weight=0,
        scale_weight=0,
        readout_through=through,
        ema_tau=0.0,
    )
    total, _ = JepaObjective(model, only_readout, f).loss(windows)
    total.backward()
    encoder_grad = sum(float(p.grad.abs().sum()) for p in model.encoder.parameters() if p.grad is not None)
    assert (encoder_grad > 0) == through
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.readout.parameters())


def test_recorded_streams_are_resampled_by_latest_sample():
    from twin.model.recorded import _hold

    t_ns = np.array([0, 10, 20, 35])
    values = np.array([[1.0], [2.0], [3.0], [4.0]])
    grid = np.array([-5, 0, 12, 20, 34, 40])
    out = _hold(t_ns, values, grid, np.array([np.nan]))
    assert np.isnan(out[0, 0]) and out[1:, 0].tolist() == [1.0, 2.0, 3.0, 3.0, 4.0]


def test_carried_observation_is_read_back_and_kept_out_of_vicreg(oscillator):
    """``carry_observation``: z = [embedding, latest features]; the carried part is read as it
    is, so the present reads back exactly; VICReg sees only the learned part (the features are
    data, not something to decorrelate)."""
    f = FeatureMap.fit(oscillator)
    model = small_model(f, carry_observation=True)
    assert (model.latent_dim, model.z_dim) == (8, 8 + f.n_features)
    windows = make_windows(oscillator, f, 3, 4).take(np.arange(64))
    with torch.no_grad():
        z = model.encode(windows.features[:, :3])
        assert z.shape == (64, 8 + f.n_features)
        assert torch.equal(z[:, 8:], windows.features[:, 2])
        assert torch.equal(model.read(z), windows.features[:, 2])
        assert model.rollout(z, windows.actions).shape == (64, 4, 8 + f.n_features)
    _, stats = JepaObjective(model, ObjectiveConfig(rollout_steps=4), f).loss(windows)
    assert math.isfinite(stats["variance"]) and math.isfinite(stats["latent"])
    with pytest.raises(ValueError, match="carry_observation"):
        ModelConfig(camera=True, sensors=False)  # the default carries: a camera-only model says no


def test_columns_hidden_from_the_encoder_are_read_by_the_mlp(oscillator):
    """With ``camera_only`` columns, the carried value of those columns is zero (the encoder
    never sees them) and the readout's MLP predicts them from the latent; the others are carried."""
    f = FeatureMap.fit(oscillator)
    torch.manual_seed(0)
    config = ModelConfig(latent_dim=8, hidden=16, history=3, camera=True, camera_only=("position",))
    names = [s.name for s in oscillator.schema.sensors]
    hidden = camera_only_columns(config, f, names)
    model = build_model(config, f.n_features, f.n_sensors, 1, hidden)
    window = torch.randn(4, 3, f.n_features)
    frames = torch.randint(0, 255, (4, 2, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        read = model.read(model.encode(window, frames))
    seen = [c for c in range(f.n_features) if c not in hidden]
    assert torch.equal(read[:, seen], window[:, -1, seen])
    assert bool((read[:, list(hidden)] != 0).all())  # from the MLP, not the zeroed carried value


def test_configs_written_before_a_field_keep_their_behaviour():
    old = ModelConfig(carry_observation=False).to_dict()
    del old["carry_observation"]
    assert ModelConfig.from_dict(old).carry_observation is False
    assert ModelConfig.from_dict(ModelConfig(carry_observation=True).to_dict()).carry_observation is True


def test_linear_path_starts_at_zero_and_adds_a_z_plus_b_e():
    """``linear_path``: the predictor's step is ``z + A z + B e + f(z, e)``; A and B start at zero,
    so a fresh model steps exactly as one without the path; rollouts (condition once, step many
    times) and single steps agree."""
    from twin.model.predictor import LatentPredictor

    torch.manual_seed(0)
    plain = LatentPredictor(6, 3, 16, 2, "film")
    torch.manual_seed(0)
    linear = LatentPredictor(6, 3, 16, 2, "film", linear=True)
    linear.load_state_dict(plain.state_dict(), strict=False)
    z, e = torch.randn(5, 6), torch.randn(5, 3)
    with torch.no_grad():
        assert torch.allclose(linear(z, e), plain(z, e))
        linear.lin_z.weight.copy_(torch.randn(6, 6))
        linear.lin_a.weight.copy_(torch.randn(6, 3))
        expected = plain(z, e) + z @ linear.lin_z.weight.T + e @ linear.lin_a.weight.T
        assert torch.allclose(linear(z, e), expected, atol=1e-5)
        a_in, mods = linear.condition(e)
        assert torch.allclose(linear.step(z, a_in, mods), expected, atol=1e-5)
    stored = {k: v for k, v in ModelConfig().to_dict().items() if k != "linear_path"}
    assert ModelConfig.from_dict(stored).linear_path is False


def test_input_clip_reads_a_state_far_outside_the_data_as_the_edge_of_it():
    """``input_clip``: the sensor encoder and the predictor's MLP read every value clamped to
    ``[-c, c]``, so a feature 8 std out (the arm's cube on the floor) gives the MLPs what 4 std
    gives; inside the range nothing changes, and the residual and linear path keep z exact."""
    from twin.model.encoders import SensorEncoder
    from twin.model.predictor import LatentPredictor

    torch.manual_seed(0)
    plain = LatentPredictor(6, 3, 16, 2, "film", linear=True)
    clipped = LatentPredictor(6, 3, 16, 2, "film", linear=True, clip=4.0)
    clipped.load_state_dict(plain.state_dict())
    with torch.no_grad():
        clipped.lin_z.weight.copy_(torch.randn(6, 6) * 0.1)
        plain.lin_z.weight.copy_(clipped.lin_z.weight)
    z, e = torch.randn(5, 6).clamp(-3, 3), torch.randn(5, 3)
    far, edge = z.clone(), z.clone()
    far[:, 2], edge[:, 2] = -8.0, -4.0
    with torch.no_grad():
        torch.testing.assert_close(clipped(z, e), plain(z, e))
        # the MLP's step is that of the edge; the residual and the linear path see -8
        mlp_far = clipped(far, e) - far - clipped.lin_z(far) - clipped.lin_a(e)
        mlp_edge = plain(edge, e) - edge - plain.lin_z(edge) - plain.lin_a(e)
        torch.testing.assert_close(mlp_far, mlp_edge, rtol=0, atol=1e-5)
        assert not torch.allclose(plain(far, e) - far, plain(edge, e) - edge, atol=1e-3)
    # the training rollout (gradients on, all actions conditioned at once) clamps as inference does
    actions = torch.randn(5, 3, 3)
    trained = clipped.unroll(far, actions)
    assert trained.requires_grad
    with torch.no_grad():
        torch.testing.assert_close(trained.detach(), clipped.unroll(far, actions), rtol=0, atol=1e-6)
        first = clipped(far, actions[:, 0]) - far - clipped.lin_z(far) - clipped.lin_a(actions[:, 0])
        edge_first = plain(edge, actions[:, 0]) - edge - plain.lin_z(edge) - plain.lin_a(actions[:, 0])
        torch.testing.assert_close(first, edge_first, rtol=0, atol=1e-5)
        step_one = trained.detach()[:, 0] - far - clipped.lin_z(far) - clipped.lin_a(actions[:, 0])
        torch.testing.assert_close(step_one, edge_first, rtol=0, atol=1e-5)
    encoder = SensorEncoder(4, 2, 8, 16, clip=4.0)
    window = torch.randn(3, 2, 4).clamp(-3, 3)
    out_far, out_edge = window.clone(), window.clone()
    out_far[:, -1, 0], out_edge[:, -1, 0] = 9.0, 4.0
    torch.testing.assert_close(encoder(out_far), encoder(out_edge))
    torch.testing.assert_close(encoder(window), encoder.net(window.flatten(1)))
    with pytest.raises(ValueError, match="input_clip"):
        ModelConfig(input_clip=-1.0)
    with pytest.raises(ValueError, match="input_clip"):
        ModelConfig(input_clip=math.inf)
    stored = {k: v for k, v in ModelConfig(input_clip=4.0).to_dict().items() if k != "input_clip"}
    assert ModelConfig.from_dict(stored).input_clip == 0.0
    model = build_model(ModelConfig(input_clip=4.0), 5, 5, 2)
    assert model.predictor.clip == 4.0 and model.encoder.sensor.clip == 4.0


def test_huber_feature_loss_is_mse_for_small_errors_and_linear_for_outliers():
    from twin.model.losses import HUBER_DELTA, feature_loss

    observed = torch.zeros(4, 3)
    small = torch.full((4, 3), HUBER_DELTA / 2)
    assert torch.isclose(feature_loss(small, observed, "huber"), feature_loss(small, observed, "mse"))
    big = torch.full((4, 3), 10.0)
    assert torch.isclose(
        feature_loss(big, observed, "huber"), torch.tensor(2 * HUBER_DELTA * (10 - HUBER_DELTA / 2))
    )
    assert feature_loss(big, observed, "huber") < feature_loss(big, observed, "mse") / 5
    with pytest.raises(ValueError, match="sensor_loss"):
        ObjectiveConfig(sensor_loss="l1")


@pytest.mark.parametrize("kind", ["mse", "log_mse", "mse+log_mse", "huber"])
def test_feature_weights_set_each_features_share_of_the_loss(kind):
    from twin.model.losses import feature_loss

    observed = torch.zeros(4, 3, 5)
    predicted = observed.clone()
    predicted[..., 1] = 0.2  # only feature 1 errs
    plain = feature_loss(predicted, observed, kind)
    assert torch.isclose(feature_loss(predicted, observed, kind, torch.ones(5)), plain)
    weights = torch.tensor([0.5, 3.0, 0.5, 0.5, 0.5])
    weighted = feature_loss(predicted, observed, kind, weights)
    if kind in ("mse", "huber"):
        assert torch.isclose(weighted, 3 * plain)
    else:
        assert not torch.isclose(weighted, plain)


def test_select_weight_weighs_the_selected_sensors_features_angles_included(oscillator):
    f = FeatureMap.fit(oscillator)  # sensor 0 is an angle: feature columns 0 and its sin, cos (3, 4)
    model = small_model(f)
    objective = JepaObjective(model, ObjectiveConfig(rollout_steps=4, select_weight=4.0), f, [0])
    assert objective.weights is not None
    expected = torch.tensor([4.0, 1.0, 1.0, 4.0, 4.0])
    assert torch.allclose(objective.weights, expected / expected.mean())
    windows = make_windows(oscillator, f, history=3, horizon=4)
    total, _ = objective.loss(windows.take(np.arange(16)))
    assert torch.isfinite(total)
    assert JepaObjective(model, ObjectiveConfig(select_weight=4.0), f).weights is None  # none selected
    assert JepaObjective(model, ObjectiveConfig(), f, [0]).weights is None  # weight 1: all alike
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="select_weight"):
            ObjectiveConfig(select_weight=bad)


@pytest.mark.parametrize("linear", [False, True])
@pytest.mark.parametrize("conditioning", ["film", "concat"])
def test_inference_rollout_equals_the_training_rollout(linear, conditioning):
    """Without gradients the predictor conditions each step's action as it comes (no (H, B,
    hidden) buffers); with them, all at once: the same latents either way, and the same as
    stepping one action at a time."""
    from twin.model.predictor import LatentPredictor

    torch.manual_seed(1)
    predictor = LatentPredictor(6, 3, 16, 2, conditioning, linear=linear)
    if linear:
        with torch.no_grad():
            predictor.lin_z.weight.copy_(torch.randn(6, 6) * 0.1)
            predictor.lin_a.weight.copy_(torch.randn(6, 3) * 0.1)
    z, actions = torch.randn(4, 6), torch.randn(4, 7, 3)
    trained = predictor.unroll(z, actions)
    assert trained.requires_grad
    with torch.no_grad():
        inferred = predictor.unroll(z, actions)
        stepped, state = [], z
        for k in range(actions.shape[1]):
            state = predictor(state, actions[:, k])
            stepped.append(state)
    assert not inferred.requires_grad and inferred.shape == (4, 7, 6)
    torch.testing.assert_close(inferred, trained.detach(), rtol=0, atol=1e-6)
    torch.testing.assert_close(inferred, torch.stack(stepped, dim=1), rtol=0, atol=1e-6)


def test_spatial_softmax_finds_where_a_map_lights_up():
    """A keypoint is the expected image position of its map: a sharp peak gives that pixel's
    coordinates in [-1, 1] (x right, y down), sub-pixel between two equal peaks."""
    from twin.model.encoders import SpatialSoftmax

    points = SpatialSoftmax(32, 32)
    maps = torch.full((1, 2, 32, 32), -50.0)
    maps[0, 0, 8, 24] = 50.0  # row 8, column 24
    maps[0, 1, 31, 0] = maps[0, 1, 31, 1] = 50.0  # bottom row, between the first two columns
    xy = points(maps).reshape(2, 2)
    step = 2 / 31
    torch.testing.assert_close(xy[0], torch.tensor([-1 + 24 * step, -1 + 8 * step]))
    torch.testing.assert_close(xy[1], torch.tensor([-1 + 0.5 * step, 1.0]))


def test_camera_keypoints_are_an_option_and_old_camera_checkpoints_load_without_them(oscillator):
    from twin.model.encoders import CameraEncoder

    frames = torch.randint(0, 255, (3, 2, 3, 64, 64), dtype=torch.uint8)
    with_points = CameraEncoder(8, channels=4, keypoints=5)
    assert with_points(frames).shape == (3, 8)
    old = CameraEncoder(8, channels=4)  # as written before keypoints: same parameter names
    assert old.points is None and old(frames).shape == (3, 8)
    assert set(old.state_dict()) <= set(with_points.state_dict())
    stored = {k: v for k, v in ModelConfig(camera=True).to_dict().items() if k != "camera_keypoints"}
    assert ModelConfig.from_dict(stored).camera_keypoints == 0


def _fit_reader(
    reader: torch.nn.Module, scenes: Callable[[int, int], tuple[torch.Tensor, torch.Tensor]], steps: int
) -> torch.Tensor:
    """Fit a camera reader to ``scenes(256, 1)`` -> (frames, target positions) with Adam, batches
    of 32 in turn, for ``steps``; R^2 per target column on the unseen ``scenes(128, 2)``."""
    frames, target = scenes(256, 1)
    optimiser = torch.optim.Adam(reader.parameters(), 3e-3)
    for step in range(steps):
        batch = torch.arange(32) + 32 * (step % 8)
        loss = torch.nn.functional.mse_loss(reader(frames[batch]), target[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    frames, target = scenes(128, 2)
    with torch.no_grad():
        error = ((reader(frames) - target) ** 2).sum(0)
    return 1 - error / ((target - target.mean(0)) ** 2).sum(0)


@pytest.mark.parametrize("pooling", ["concat", "presence"])
def test_pixel_keypoint_reader_learns_where_a_coloured_square_is(pooling):
    """The keypoint-only camera reader: shapes, and in 300 steps on random scenes it reads a
    green square's position (R^2 > 0.9 on scenes it never saw) among grey distractors, with
    both frames' keypoints or (in 600) with each keypoint pooled over the frames."""
    from twin.model.encoders import PixelKeypointEncoder

    def scenes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        frames = torch.randint(90, 160, (n, 1, 3, 64, 64), generator=g, dtype=torch.uint8)
        where = torch.randint(2, 59, (n, 2, 2), generator=g)  # (square, distractor) x (row, col)
        for i in range(n):
            (r, c), (rd, cd) = where[i].tolist()
            frames[i, 0, :, rd : rd + 4, cd : cd + 4] = 230  # a bright grey square: not it
            frames[i, 0, :, r : r + 3, c : c + 3] = torch.tensor([40, 180, 40], dtype=torch.uint8)[
                :, None, None
            ]
        return frames.expand(n, 2, 3, 64, 64), where[:, 0].float() / 63

    torch.manual_seed(0)
    reader = PixelKeypointEncoder(2, channels=8, keypoints=2, pooling=pooling)
    assert reader(torch.zeros(5, 2, 3, 64, 64, dtype=torch.uint8)).shape == (5, 2)
    r2 = _fit_reader(reader, scenes, 300 if pooling == "concat" else 600)  # pooled keypoints learn slower
    assert bool((r2 > 0.9).all()), r2
    with pytest.raises(ValueError, match="camera_reader"):
        ModelConfig(camera=True, camera_reader="vit")
    model = build_model(ModelConfig(camera=True, camera_reader="keypoints", latent_dim=8), 4, 4, 1)
    assert isinstance(model.encoder.camera, PixelKeypointEncoder)


@pytest.mark.slow
def test_spare_keypoint_maps_find_a_faint_cube_that_one_map_per_cube_loses():
    """Three small squares (green, magenta, and a pale one barely off the beige table, like the
    arm's white cube) and an orange block, on a noisy table: a keypoint reader with as many maps
    as squares loses one (a keypoint moves toward a square only where its map already weighs it,
    so a square no map lit up at the start stays unread), one with 16 maps reads all three
    positions on scenes it never saw (docs/model.md, "Spare keypoints")."""
    from twin.model.encoders import PixelKeypointEncoder

    def scenes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        table = torch.tensor([182, 159, 132])[:, None, None]
        frames = (table + torch.randint(-12, 13, (n, 3, 64, 64), generator=g)).clamp(0, 255).to(torch.uint8)
        where = torch.randint(2, 59, (n, 3, 2), generator=g)  # (square) x (row, col)
        block = torch.randint(0, 40, (n, 2), generator=g)
        colours = torch.tensor([[40, 160, 40], [190, 30, 190], [215, 212, 220]], dtype=torch.uint8)
        orange = torch.tensor([240, 100, 20], dtype=torch.uint8)[:, None, None]
        for i in range(n):
            r, c = block[i].tolist()
            frames[i, :, r : r + 24, c : c + 24] = orange
            for k in range(3):
                r, c = where[i, k].tolist()
                frames[i, :, r : r + 3, c : c + 3] = colours[k][:, None, None]
        return frames[:, None].expand(n, 2, 3, 64, 64), where.flatten(1).float() / 63

    def r2_after_training(keypoints: int) -> torch.Tensor:
        torch.manual_seed(0)
        reader = PixelKeypointEncoder(6, channels=8, keypoints=keypoints, pooling="presence")
        return _fit_reader(reader, scenes, 600)  # (6,): each square's row, col

    spare = r2_after_training(16)
    assert bool((spare > 0.9).all()), spare
    one_each = r2_after_training(3)
    assert float(one_each.reshape(3, 2).mean(1).min()) < 0.5, one_each  # a square left unread


def test_frame_pairs_read_each_shared_frame_once_and_give_what_the_pairs_give():
    """Training windows share frames: :class:`FrameStacks` holds each once, every camera encoder
    reads it to the same embedding as the pairs gathered, and ``encoder_windows`` builds them
    from a batch's (previous, latest) frames."""
    import numpy as np

    from twin.model.data import Windows
    from twin.model.encoders import CameraEncoder, FrameStacks, PixelKeypointEncoder
    from twin.model.losses import encoder_windows

    torch.manual_seed(0)
    shared = FrameStacks(
        torch.randint(0, 255, (5, 3, 64, 64), dtype=torch.uint8),
        torch.tensor([[0, 1], [1, 2], [2, 3], [4, 2]]),
    )
    encoders = (
        PixelKeypointEncoder(8, keypoints=3),
        PixelKeypointEncoder(8, keypoints=3, pooling="presence"),
        CameraEncoder(8, channels=4),
    )
    for encoder in encoders:
        with torch.no_grad():
            assert torch.allclose(encoder(shared), encoder(shared.gather()), atol=1e-5)
    bank = torch.randint(0, 255, (20, 3, 64, 64), dtype=torch.uint8)
    index = torch.tensor([list(range(3, 9)), list(range(10, 16))])  # history 2 + 4 steps each
    batch = Windows(torch.zeros(2, 6, 1), torch.zeros(2, 4, 1), np.zeros((2, 6, 1)), bank, index)
    _, frames = encoder_windows(batch, 2)
    assert frames is not None and len(frames) == 10 and len(frames.frames) == 12  # 20 reads -> 12
    pairs = torch.stack([index[:, :-1], index[:, 1:]], dim=2).reshape(-1, 2)
    assert torch.equal(frames.gather(), bank[pairs])
    # history 4, stacks of 3 frames: each of the 3 observed windows reads its last 3
    features, frames = encoder_windows(batch, 4, frames=3)
    assert features.shape == (6, 4, 1) and frames is not None and len(frames) == 6
    stacks = torch.stack([index[:, j : j + 3] for j in (1, 2, 3)], dim=1).reshape(-1, 3)
    assert torch.equal(frames.gather(), bank[stacks])
    assert torch.equal(frames.gather()[:, -1], bank[index[:, 3:].reshape(-1)])  # the latest last
    reader = PixelKeypointEncoder(8, keypoints=3, pooling="presence", frames=3)
    with torch.no_grad():
        assert torch.allclose(reader(frames), reader(frames.gather()), atol=1e-5)
    with pytest.raises(ValueError, match="FrameStacks"):
        FrameStacks(bank, torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="stacks of 3 frames"):
        reader(shared)


def test_presence_pooling_reads_each_keypoint_from_the_frame_that_shows_it():
    """``pooling="presence"``: a keypoint whose colour the latest frame does not show (a cube
    under the arm) is read from the previous frame, one that only the latest shows from that."""
    from twin.model.encoders import PixelKeypointEncoder

    reader = PixelKeypointEncoder(6, keypoints=3, pooling="presence")
    reader.maps = torch.nn.AvgPool2d(2)  # keypoint k lights up where colour channel k is bright
    reader.out = torch.nn.Identity()  # the pooled (x, y) of each keypoint, in [-1, 1]
    with torch.no_grad():
        reader.presence_gain.fill_(10.0)
    frames = torch.zeros(1, 2, 3, 64, 64, dtype=torch.uint8)
    frames[0, 0, 0, 8:12, 40:44] = 255  # red, previous frame only: grid rows 4-5, cols 20-21
    frames[0, 1, 1, 48:52, 8:12] = 255  # green, latest frame only: rows 24-25, cols 4-5
    with torch.no_grad():
        (red_x, red_y, green_x, green_y, *_) = reader(frames)[0].tolist()
    grid = lambda cell: -1 + 2 * cell / 31  # noqa: E731
    assert red_x == pytest.approx(grid(20.5), abs=0.02) and red_y == pytest.approx(grid(4.5), abs=0.02)
    assert green_x == pytest.approx(grid(4.5), abs=0.02) and green_y == pytest.approx(grid(24.5), abs=0.02)
    assert PixelKeypointEncoder(6, keypoints=3)(frames).shape == (1, 6)  # concat: both frames
    with pytest.raises(ValueError, match="pooling"):
        PixelKeypointEncoder(6, pooling="max")


def test_presence_pooling_over_four_frames_reads_a_keypoint_hidden_in_the_last_two():
    """``frames=4``: a colour the last two frames do not show (a cube under the arm for two
    steps) is read where the frames before showed it; one every frame shows, from the latest.
    With two frames the hidden one is lost (its keypoint falls back toward the centre)."""
    from twin.model.encoders import PixelKeypointEncoder

    def reader(frames: int) -> PixelKeypointEncoder:
        r = PixelKeypointEncoder(6, keypoints=3, pooling="presence", frames=frames)
        r.maps = torch.nn.AvgPool2d(2)  # keypoint k lights up where colour channel k is bright
        r.out = torch.nn.Identity()
        with torch.no_grad():
            r.presence_gain.fill_(10.0)
        return r

    frames = torch.zeros(1, 4, 3, 64, 64, dtype=torch.uint8)
    frames[0, :2, 0, 8:12, 40:44] = 255  # red in the two oldest frames only
    frames[0, :, 1, 48:52, 8:12] = 255  # green in every frame, still
    frames[0, 3, 1, 48:52, 8:12] = 0
    frames[0, 3, 1, 48:52, 12:16] = 255  # ... and moved two cells right in the latest
    grid = lambda cell: -1 + 2 * cell / 31  # noqa: E731
    with torch.no_grad():
        red_x, red_y, green_x, green_y, *_ = reader(4)(frames)[0].tolist()
        red_x2, _, _, _, *_ = reader(2)(frames)[0].tolist()
    assert red_x == pytest.approx(grid(20.5), abs=0.02) and red_y == pytest.approx(grid(4.5), abs=0.02)
    assert grid(5.5) < green_x < grid(6.5) and green_y == pytest.approx(
        grid(24.5), abs=0.02
    )  # mostly the latest
    assert abs(red_x2 - grid(20.5)) > 0.3  # two frames: the red keypoint is lost
    with pytest.raises(ValueError, match="last 4 frames"):
        reader(4)(frames[:, 1:])
    with pytest.raises(ValueError, match="frames"):
        PixelKeypointEncoder(6, frames=1)
    with pytest.raises(ValueError, match="camera_frames"):
        ModelConfig(
            camera=True, camera_reader="keypoints", history=3, camera_frames=4
        )  # more than the window
    with pytest.raises(ValueError, match="camera_frames"):
        ModelConfig(camera=True, history=4, camera_frames=4)  # the CNN reads a pair
    model = build_model(
        ModelConfig(camera=True, camera_reader="keypoints", history=4, camera_frames=4, latent_dim=8), 4, 4, 1
    )
    assert model.camera_frames == 4 and model.encoder.frames == 4
    assert (
        ModelConfig.from_dict(
            {k: v for k, v in ModelConfig().to_dict().items() if k != "camera_frames"}
        ).camera_frames
        == 2
    )


def test_camera_readout_options_are_checked_and_old_configs_read_as_before():
    """``keypoint_pooling`` and ``camera_readout`` need the parts they change; a linear camera
    readout is one linear map from the camera's dimensions; configs stored before the fields
    existed build the model they were trained with."""
    camera = {"camera": True, "camera_only": ("position",), "latent_dim": 8, "camera_dims": 3}
    with pytest.raises(ValueError, match="keypoint_pooling"):
        ModelConfig(camera=True, keypoint_pooling="presence")  # the CNN reader has no keypoints to pool
    with pytest.raises(ValueError, match="keypoint_pooling"):
        ModelConfig(camera=True, camera_reader="keypoints", keypoint_pooling="max")
    with pytest.raises(ValueError, match="camera_readout"):
        ModelConfig(camera=True, camera_only=("position",), camera_readout="linear")  # no camera_dims
    with pytest.raises(ValueError, match="camera_readout"):
        ModelConfig(**camera, camera_readout="tree")
    model = build_model(
        ModelConfig(**camera, camera_reader="keypoints", camera_readout="linear"), 4, 4, 1, (0, 1)
    )
    assert isinstance(model.readout.mean, torch.nn.Linear) and model.readout.mean.in_features == 3
    stored = {
        k: v
        for k, v in ModelConfig(**camera).to_dict().items()
        if k not in ("keypoint_pooling", "camera_readout")
    }
    old = ModelConfig.from_dict(stored)
    assert (old.keypoint_pooling, old.camera_readout) == ("concat", "mlp")


def test_camera_dims_keep_what_only_the_camera_shows_in_its_own_part_of_the_latent(oscillator):
    """``camera_dims``: the camera's embedding fills the last dims of the learned latent, the
    sensors' the others, and the ``camera_only`` columns are read from the camera's dims alone:
    the sensors cannot change them (at the present), the frames can."""
    f = FeatureMap.fit(oscillator)
    names = [s.name for s in oscillator.schema.sensors]
    torch.manual_seed(0)
    config = ModelConfig(
        latent_dim=8, hidden=16, history=3, camera=True, camera_only=("position",), camera_dims=3
    )
    hidden = list(camera_only_columns(config, f, names))
    model = build_model(config, f.n_features, f.n_sensors, 1, tuple(hidden))
    frames = torch.randint(0, 255, (4, 2, 3, 64, 64), dtype=torch.uint8)
    window = torch.randn(4, 3, f.n_features)
    with torch.no_grad():
        z = model.encode(window, frames)
        other_sensors = model.encode(window + torch.randn_like(window), frames)
        other_frames = model.encode(window, torch.randint(0, 255, frames.shape, dtype=torch.uint8))
    assert torch.equal(z[:, 5:8], other_sensors[:, 5:8]) and not torch.equal(z[:, :5], other_sensors[:, :5])
    assert torch.equal(z[:, :5], other_frames[:, :5]) and not torch.equal(z[:, 5:8], other_frames[:, 5:8])
    read, read_other = model.read(z), model.read(other_sensors)
    assert torch.equal(read[:, hidden], read_other[:, hidden])
    with pytest.raises(ValueError, match="camera_dims"):
        ModelConfig(camera=True, camera_dims=3)  # nothing only the camera shows
    with pytest.raises(ValueError, match="camera_dims"):
        ModelConfig(camera=True, camera_only=("position",), camera_dims=3.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="camera_dims"):
        ModelConfig(camera=True, camera_only=("position",), camera_dims=8, latent_dim=8)


@pytest.mark.parametrize(("tolerance", "kept"), [(0.0, 2), (0.01, 4)])
def test_a_near_tie_in_validation_keeps_the_later_weights_when_asked(tolerance, kept):
    class Tiny:
        """A one-weight objective: its weight is the step count, so the kept weights say which
        evaluation was chosen."""

        def __init__(self) -> None:
            self.model = torch.nn.Linear(1, 1, bias=False)

        def parameters(self):
            return list(self.model.parameters())

        def loss(self, batch):
            return (self.model.weight * 0.0).sum(), {}

        def after_step(self) -> None:
            with torch.no_grad():
                self.model.weight.fill_(self.model.weight.item() + 1)

    class Rows:
        def __len__(self) -> int:
            return 4

        def take(self, index):
            return None

    scores = iter([1.0, 0.995, 1.2, 0.999, 1.3])
    objective = Tiny()
    with torch.no_grad():
        objective.model.weight.fill_(0.0)
    config = TrainConfig(steps=5, eval_every=1, warmup=0, patience=10, keep_later_within=tolerance)
    result = Trainer(config, objective, Rows(), lambda: next(scores)).fit()  # type: ignore[arg-type]
    assert result.best_step == kept and objective.model.weight.item() == kept
    assert result.best_val == (0.995 if kept == 2 else 0.999)  # the score of the weights kept
    with pytest.raises(ValueError, match="keep_later_within"):
        TrainConfig(keep_later_within=1.5)


def test_presence_equals_logsumexp_on_sharp_maps_value_and_gradient() -> None:
    """The clamped log-sum-exp of SpatialSoftmax.presence is torch.logsumexp's, on maps
    whose cells lie far below their peaks (where exp underflows) as on mild ones."""
    from twin.model.encoders import SpatialSoftmax

    torch.manual_seed(0)
    for spread in (1.0, 20.0, 30.0, 300.0):  # none, 77%, 96%, all but the peak clamped
        scaled = torch.randn(6, 16, 1024, dtype=torch.float64) * spread
        scaled[:, :, 7] += 5 * spread  # one peak per map
        mine = scaled.float().requires_grad_()
        reference = scaled.float().requires_grad_()
        value = SpatialSoftmax.presence(mine)
        expected = 0.1 * (torch.logsumexp(reference, dim=-1) - math.log(1024))
        torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-6)
        weights = torch.randn_like(value)
        (value * weights).sum().backward()
        (expected * weights).sum().backward()
        torch.testing.assert_close(mine.grad, reference.grad, rtol=1e-4, atol=1e-6)


def test_points_and_presence_from_one_exp_equal_softmax_points_and_presence() -> None:
    """SpatialSoftmax.points_and_presence (one exp over the maps for both) gives its
    keypoints (the fused softmax's) and the presence, values and gradients, on sharp and mild maps."""
    from twin.model.encoders import SpatialSoftmax

    torch.manual_seed(1)
    soft = SpatialSoftmax(32, 32)
    for spread in (1.0, 20.0, 300.0):
        scaled = torch.randn(5, 16, 1024) * spread
        scaled[:, :, 11] += 5 * spread
        mine, reference = scaled.clone().requires_grad_(), scaled.clone().requires_grad_()
        points, presence = soft.points_and_presence(mine)
        expected_points = soft.points(reference)
        expected_presence = SpatialSoftmax.presence(reference)
        torch.testing.assert_close(points, expected_points, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(presence, expected_presence, rtol=0, atol=0)
        weights = torch.randn_like(points), torch.randn_like(presence)
        ((points * weights[0]).sum() + (presence * weights[1]).sum()).backward()
        ((expected_points * weights[0]).sum() + (expected_presence * weights[1]).sum()).backward()
        torch.testing.assert_close(mine.grad, reference.grad, rtol=1e-4, atol=1e-6)
