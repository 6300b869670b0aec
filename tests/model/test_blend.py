"""The horizon blend: what its fit chooses, that it is saved, and that every forecast reads it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from modelutil import TINY_RUN, oscillator_data

from twin.model.api import TwinModel
from twin.model.blend import HorizonBlend, fit_blend
from twin.model.checkpoint import load_checkpoint, save_checkpoint
from twin.model.data import make_windows
from twin.model.evaluate import predict_with_scale
from twin.model.pipeline import EVAL_HORIZON, RunConfig, run


def test_the_blend_leans_on_the_present_only_where_the_model_is_worse():
    """Feature 0: the model predicts it well (the blend leaves it alone). Feature 1: it sits
    still and the model's rollout drifts away (the blend takes the present). Feature 2: a
    lost phase, the model's prediction no better than noise (the blend shrinks it to the
    mean)."""
    rng = np.random.default_rng(0)
    n, h = 400, 6
    truth0 = rng.normal(size=(n, h))
    still = rng.normal(size=n)
    truth2 = rng.normal(size=(n, h))
    predicted = np.stack(
        [
            truth0 + 0.05 * rng.normal(size=(n, h)),
            still[:, None] + np.linspace(0, 1, h) * rng.normal(size=(n, 1)),
            rng.normal(size=(n, h)),
        ],
        axis=-1,
    )
    present = np.stack([rng.normal(size=n), still, rng.normal(size=n)], axis=-1)
    observed = np.stack([truth0, np.repeat(still[:, None], h, axis=1), truth2], axis=-1)
    blend, report = fit_blend(predicted, present, observed)
    w = blend.weights.numpy()
    assert report["pull_h1_h10_h50"][0] == [None]  # left as the model predicts it (only h1 < 6)
    np.testing.assert_allclose(w[:, 0], np.tile([1.0, 0.0, 0.0], (h, 1)), atol=0.01)
    assert w[-1, 1, 1] > 0.9 and abs(w[-1, 1, 0]) < 0.1  # the present, not the drift
    assert abs(w[-1, 2, 0]) < 0.2 and abs(w[-1, 2, 1]) < 0.2  # ~ the mean
    assert report["blended_features"] >= 2 and report["blended_cells"] < 3 * h
    assert report["cv_mse_selected"] < 0.7 * report["cv_mse_unblended"]
    out = blend(torch.from_numpy(predicted).float(), torch.from_numpy(present).float()).numpy()
    assert np.mean((out - observed) ** 2) < np.mean((predicted - observed) ** 2)


def test_a_still_feature_whose_rollout_drifts_is_pulled_to_the_present():
    """A cube that sits still, read now with a small error, whose rollout adds a drift of its
    own: the fit toward the present takes the present as it is (weights ~(0, 1, 0)); without
    that candidate the weights stay a least-squares mix of the two."""
    rng = np.random.default_rng(2)
    n, h = 60, 3
    still = rng.normal(size=(n, 1))
    present = still + 0.05 * rng.normal(size=(n, 1))
    predicted = (present + 0.3 * rng.normal(size=(n, h)))[..., None]
    observed = np.repeat(still, h, axis=1)[..., None]
    blend, report = fit_blend(predicted, present, observed)
    assert report["toward_present_cells"] == h and report["pull_h1_h10_h50"][0][0].startswith("present")
    w = blend.weights.numpy()
    assert np.all(np.abs(w[:, 0, 0]) < 0.05) and np.all(np.abs(w[:, 0, 1] - 1) < 0.05)
    with pytest.raises(ValueError, match="present_pulls"):
        fit_blend(predicted, present, observed, present_pulls=(0.0,))
    only_model, report = fit_blend(predicted, present, observed, present_pulls=())
    assert report["toward_present_cells"] == 0
    mix = only_model.weights.numpy()[:, 0]  # least squares: a mix, the fit's noise in it
    assert np.all(np.abs(mix[:, 1] - 1) > np.abs(w[:, 0, 1] - 1)) and np.all(np.abs(mix[:, 0]) > 0.005)


def test_a_feature_the_held_out_windows_never_saw_move_is_not_blended():
    """A cube that sat still in every validation episode: its noise fits any weights, and a
    blend fitted on it would freeze the forecast of a cube that falls in service."""
    rng = np.random.default_rng(1)
    n, h = 300, 4
    level = 0.3 + 0.01 * rng.normal(size=(n, 1))
    predicted = (level + 0.01 * rng.normal(size=(n, h)))[..., None]
    observed = (level + 0.01 * rng.normal(size=(n, h)))[..., None]
    blend, report = fit_blend(predicted, level, observed)
    assert report["blended_cells"] == 0
    falls = blend(torch.full((1, h, 1), -2.0), torch.full((1, 1), 0.3))
    assert torch.allclose(falls, torch.full((1, h, 1), -2.0))


def test_steps_beyond_the_fitted_horizon_use_its_last_row_and_bad_shapes_are_refused():
    w = torch.zeros(3, 2, 3)
    w[..., 0] = torch.tensor([1.0, 2.0, 3.0])[:, None]
    blend = HorizonBlend(w)
    out = blend(torch.ones(1, 5, 2), torch.zeros(1, 2))
    assert out[0, :, 0].tolist() == [1.0, 2.0, 3.0, 3.0, 3.0]
    with pytest.raises(ValueError, match=r"\(H, F, 3\)"):
        HorizonBlend(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="at least"):
        fit_blend(np.zeros((5, 2, 1)), np.zeros((5, 1)), np.zeros((5, 2, 1)))
    with pytest.raises(ValueError, match="inf"):
        fit_blend(np.zeros((30, 2, 1)), np.zeros((30, 1)), np.zeros((30, 2, 1)), pulls=(0.1, 1.0))


RUN = TINY_RUN


@pytest.fixture(scope="module")
def blended():
    torch.manual_seed(0)
    return run(oscillator_data(episodes=20, steps=150), RUN, seed=3)


def test_a_run_fits_the_blend_reports_it_and_scores_the_unblended_model_beside_it(blended):
    assert blended.model.blend is not None
    assert blended.model.blend.weights.shape == (EVAL_HORIZON, blended.features.n_features, 3)
    report = blended.metrics["blend"]
    assert report["windows"] >= 20 and len(report["pull_h1_h10_h50"]) == blended.features.n_features
    assert report["cv_mse_selected"] <= report["cv_mse_unblended"]
    assert set(blended.metrics["nrmse"]) >= {"jepa", "jepa_unblended", "persistence", "linear"}
    assert RunConfig.from_dict({**RUN.to_dict()}).blend is True
    legacy = RUN.to_dict()
    del legacy["blend"]
    assert RunConfig.from_dict(legacy).blend is False  # runs stored before it: as they were


def test_every_forecast_reads_the_blend_and_a_checkpoint_keeps_it(blended, tmp_path):
    """TwinModel.predict, the evaluation's predict_with_scale and the worker's batched forecast
    give the same values, which are the blended ones; a saved model gives them back."""
    from twin.worker.inference import ModelAdapter

    loaded = load_checkpoint(save_checkpoint(blended, tmp_path / "m.pt"))
    assert torch.equal(loaded.model.blend.weights, blended.model.blend.weights)
    assert np.array_equal(
        TwinModel(loaded).forecast(np.zeros((3, 3)), np.zeros((5, 1))).values,
        TwinModel(blended).forecast(np.zeros((3, 3)), np.zeros((5, 1))).values,
    )
    loaded.model.blend.weights[..., 2] += 0.5  # a blend that moves every cell, so a bypass shows
    data = oscillator_data(episodes=1, steps=80, seed=9)
    windows = make_windows(data, blended.features, 3, 20)
    obs_window, actions = windows.obs[0, :3], data.episodes[0].actions[2:22]
    twin = TwinModel(loaded)
    api = twin.forecast(obs_window, actions).values
    evaluated, _ = predict_with_scale(loaded.model, loaded.features, windows.take([0]), 20)
    np.testing.assert_allclose(api, evaluated[0], rtol=1e-5, atol=1e-6)
    unblended = twin.read(twin.predict_latents(twin.encode(obs_window), actions))[0]
    assert not np.allclose(api, unblended, atol=1e-4)  # the blend changed the forecast
    held = np.full((1, 1), actions[0, 0])
    worker = ModelAdapter(twin, "osc").forecast(obs_window[None], None, held, 20)
    constant = twin.forecast(obs_window, np.repeat(actions[:1], 20, axis=0)).values
    np.testing.assert_allclose(worker.values[0], constant, rtol=1e-4, atol=1e-5)
    # the detector's one-step evidence is the model's own prediction, before the blend
    z = twin.encode(obs_window)
    own = twin.read(twin.predict_latents(z, np.repeat(actions[:1], 1, axis=0)))[0][0]
    np.testing.assert_allclose(worker.next_values[0], own, rtol=1e-4, atol=1e-5)
    assert not np.allclose(worker.next_values[0], worker.values[0, 0], atol=1e-3)
    assert math.isfinite(float(worker.high.max()))


def test_a_fine_tuned_copy_keeps_the_inherited_blend_only_if_it_still_helps(blended):
    import copy

    from twin.worker.adapt import _keep_blend

    data = oscillator_data(episodes=3, steps=80, seed=11)
    held = {"osc": make_windows(data, blended.features, 3, 10)}
    model = copy.deepcopy(blended.model)
    assert _keep_blend(model, blended, held, 10) is True and model.blend is not None  # its own fit
    model.blend.weights[..., 2] += 3.0  # fitted to some other network's bias
    assert _keep_blend(model, blended, held, 10) is False and model.blend is None
    assert _keep_blend(model, blended, held, 10) is None  # none to keep


def test_select_on_scores_only_the_named_sensors_and_is_checked():
    """``RunConfig.select_on``: the JEPA's best weights and early stopping follow the named
    sensors' validation error; an unknown name is an error before training; runs stored
    before the field select on every sensor."""
    import dataclasses

    from twin.model.baselines import NeuralForecaster
    from twin.model.pipeline import prepare, train_jepa, validation
    from twin.model.presets import scene_select_on

    torch.manual_seed(0)
    data = oscillator_data(episodes=12, steps=120)
    config = dataclasses.replace(RUN, select_on=("position",))
    prepared = prepare(data, config, seed=1)
    model, result = train_jepa(prepared, config, seed=1)
    forecaster = NeuralForecaster(model, prepared.features, config.model.history)
    selected = validation(forecaster, prepared, [2])
    assert result.best_val == pytest.approx(selected, rel=1e-6)  # the kept weights' score is theirs
    every = validation(forecaster, prepared)
    per_sensor = [validation(forecaster, prepared, [i]) for i in range(3)]
    assert every == pytest.approx(np.mean(per_sensor)) and selected == per_sensor[2] != every
    with pytest.raises(ValueError, match="no sensor named"):
        train_jepa(prepared, dataclasses.replace(RUN, select_on=("pressure",)), seed=1)
    for bad, message in (
        (("",), "not a sensor name"),
        ("position", "not one string"),
        (("rate", "rate"), "twice"),
    ):
        with pytest.raises(ValueError, match=message):
            RunConfig(select_on=bad)
    with pytest.raises(ValueError, match="empty list"):
        validation(forecaster, prepared, [])
    assert all(
        row["val"] == pytest.approx(result.best_val)
        for row in result.history
        if row["step"] == result.best_step
    )
    assert RunConfig.from_dict(config.to_dict()).select_on == ("position",)
    legacy = config.to_dict()
    del legacy["select_on"]
    assert RunConfig.from_dict(legacy).select_on == ()
    assert scene_select_on("arm", ("cube",)) == tuple(f"cube{k}_{a}" for k in range(3) for a in "xy")
    assert scene_select_on("arm", ("cube1",)) == ("cube1_x", "cube1_y")
    assert scene_select_on("arm", ()) == () and scene_select_on("cartpole", ("pole",)) == ()


def test_select_horizons_score_only_those_steps_and_are_checked():
    """``RunConfig.select_horizons``: the kept weights are those of the best validation error
    at the named horizons alone; the default scores 10 and 50 steps, the mean of each alone;
    bad horizons are errors; runs stored before the field select at 10 and 50 steps; camera
    runs with a selection select at 10 steps (``presets.scene_selection``)."""
    import dataclasses

    from twin.model.baselines import NeuralForecaster
    from twin.model.pipeline import prepare, train_jepa, validation
    from twin.model.presets import CAMERA_SELECT_HORIZONS, scene_selection

    torch.manual_seed(0)
    data = oscillator_data(episodes=12, steps=120)
    config = dataclasses.replace(RUN, select_horizons=(10,))
    prepared = prepare(data, config, seed=1)
    model, result = train_jepa(prepared, config, seed=1)
    forecaster = NeuralForecaster(model, prepared.features, config.model.history)
    at10 = validation(forecaster, prepared, horizons=(10,))
    at50 = validation(forecaster, prepared, horizons=(50,))
    assert result.best_val == pytest.approx(at10, rel=1e-6) and at10 != at50
    assert validation(forecaster, prepared) == pytest.approx((at10 + at50) / 2)
    for bad in ((), (0,), (51,), (10, 10), (2.5,)):
        with pytest.raises(ValueError, match="select_horizons"):
            RunConfig(select_horizons=bad)
    with pytest.raises(ValueError, match="horizons"):
        validation(forecaster, prepared, horizons=(60,))
    assert RunConfig.from_dict(config.to_dict()).select_horizons == (10,)
    legacy = config.to_dict()
    del legacy["select_horizons"]
    assert RunConfig.from_dict(legacy).select_horizons == (10, 50) == RunConfig().select_horizons
    camera = scene_selection("arm", ("cube",))
    assert camera["select_horizons"] == CAMERA_SELECT_HORIZONS == (10,) and len(camera["select_on"]) == 6
    assert scene_selection("arm", ()) == {"select_on": (), "select_horizons": (10, 50)}
    assert RunConfig(**camera).select_horizons == (10,)
