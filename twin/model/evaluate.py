"""Held-out evaluation: every model and baseline on the same windows of the same test episodes.

Normalised RMSE at horizon h: per sensor, the RMSE of the h-step-ahead prediction divided by that
sensor's standard deviation in the training data (angle differences wrapped), then averaged over
sensors (``nrmse``) and reported per sensor (``nrmse_per_sensor``). Also: 90% band coverage per
horizon, the error when the future actions are shuffled between windows (does the model use
them?), and latent health (per-dimension std, effective rank).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from twin.model.baselines import Forecaster, NeuralForecaster
from twin.model.calibration import ConformalBands
from twin.model.data import FeatureMap, Windows
from twin.model.encoders import PixelKeypointEncoder
from twin.model.jepa import JepaWorldModel
from twin.model.losses import latent_health

HORIZONS = (1, 10, 50)


def observed_future(windows: Windows, history: int, horizon: int) -> np.ndarray:
    return windows.obs[:, history : history + horizon]


def nrmse_table(predicted: np.ndarray, observed: np.ndarray, features: FeatureMap) -> np.ndarray:
    """(H, S) normalised RMSE from predictions and observations (N, H, S) in SI."""
    error = features.normalised_error(predicted, observed)
    return np.sqrt(np.mean(error**2, axis=0))


def score(
    forecasters: dict[str, Forecaster],
    windows: Windows,
    features: FeatureMap,
    sensors: list[str],
    horizons=HORIZONS,
) -> dict[str, Any]:
    """{"nrmse": {model: {h: value}}, "nrmse_per_sensor": {model: {sensor: {h: value}}}}."""
    horizon = max(horizons)
    nrmse: dict[str, dict[str, float]] = {}
    per_sensor: dict[str, dict[str, dict[str, float]]] = {}
    for name, model in forecasters.items():
        table = nrmse_table(
            model.forecast(windows, horizon), observed_future(windows, model.history, horizon), features
        )
        nrmse[name] = {str(h): round(float(table[h - 1].mean()), 5) for h in horizons}
        per_sensor[name] = {
            sensor: {str(h): round(float(table[h - 1, i]), 5) for h in horizons}
            for i, sensor in enumerate(sensors)
        }
    return {"nrmse": nrmse, "nrmse_per_sensor": per_sensor}


@torch.no_grad()
def read_frames(model: JepaWorldModel, windows: Windows, batch: int = 512) -> Windows:
    """``windows`` with every frame of their bank read once by ``model``'s keypoint camera reader
    (:class:`~twin.model.encoders.PixelKeypointEncoder`, which reads frames one by one), so that
    each later encode of them only pools those readings (``Windows.frame_readings``); the same
    ``windows`` for a model without one. An evaluation encodes its test windows eight times
    (each model's forecast, the bands, the shuffled actions, the latent health), each reading
    every window's frames again: for the arm's camera, 4 frames a window. The readings belong to
    the model's weights now: read again after changing them."""
    camera = getattr(model.encoder, "camera", None)
    if not isinstance(camera, PixelKeypointEncoder) or windows.frame_bank is None:
        return windows
    model.eval()
    bank = windows.frame_bank
    parts = [camera.read(bank[i : i + batch]) for i in range(0, len(bank), batch)]
    points = torch.cat([p for p, _ in parts])
    presence = None if parts[0][1] is None else torch.cat([q for _, q in parts])  # type: ignore[misc]
    return dataclasses.replace(windows, frame_readings=(points, presence))


def rollouts(
    model: JepaWorldModel, windows: Windows, horizon: int, actions=None, batch: int = 2048
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The JEPA's rollouts over ``windows`` in batches, without gradients: (z0 (b, D) the
    latent each window starts from, z (b, horizon, D) its rollout under ``actions`` (default
    the windows' own))."""
    model.eval()
    h = model.history
    actions = windows.actions[:, :horizon] if actions is None else actions
    for i in range(0, len(windows), batch):
        with torch.no_grad():
            frames = windows.frames(slice(i, i + batch), slice(h - model.camera_frames, h))
            z0 = model.encode(windows.features[i : i + batch, :h], frames)
            yield z0, model.rollout(z0, actions[i : i + batch])


@torch.no_grad()
def predict_with_scale(
    model: JepaWorldModel, features: FeatureMap, windows: Windows, horizon: int, actions=None
):
    """(predicted SI (N, H, S), error scale (N, H, S)) of the JEPA model over ``windows``."""
    values, scales = [], []
    for z0, z in rollouts(model, windows, horizon, actions):
        values.append(features.values(model.read_forecast(z0, z).numpy()))
        scales.append(model.error_scale(z).numpy())
    return np.concatenate(values), np.concatenate(scales)


class Unblended:
    """A JEPA's forecasts as its rollout reads them, without the horizon blend: the evaluation
    row that shows what the blend buys."""

    def __init__(self, model: JepaWorldModel) -> None:
        self.model = model

    def eval(self) -> Unblended:
        self.model.eval()
        return self

    def forecast_features(
        self, features: torch.Tensor, frames: torch.Tensor | None, actions: torch.Tensor
    ) -> torch.Tensor:
        return self.model.read(self.model.rollout(self.model.encode(features, frames), actions))


def band_errors(model: JepaWorldModel, features: FeatureMap, windows: Windows, horizon: int):
    """(normalised errors (N, H, S), scales (N, H, S)) for calibration or coverage."""
    predicted, scale = predict_with_scale(model, features, windows, horizon)
    error = features.normalised_error(predicted, observed_future(windows, model.history, horizon))
    return error, scale


def diagnostics(
    model: JepaWorldModel,
    features: FeatureMap,
    windows: Windows,
    bands: ConformalBands,
    seed: int,
    horizons=HORIZONS,
) -> dict[str, Any]:
    """Band coverage per horizon, shuffled-action error ratio at 10 steps, latent health."""
    horizon = max(horizons)
    error, scale = band_errors(model, features, windows, horizon)
    coverage = bands.coverage(error, scale)
    generator = torch.Generator().manual_seed(seed)
    shuffled = windows.actions[torch.randperm(len(windows), generator=generator)][:, :horizon]
    h10 = min(10, horizon)
    observed = observed_future(windows, model.history, h10)

    def shuffled_ratio(forecaster: NeuralForecaster) -> float:
        normal = nrmse_table(forecaster.forecast(windows, h10), observed, features)[h10 - 1].mean()
        permuted = nrmse_table(forecaster.forecast(windows, h10, shuffled[:, :h10]), observed, features)
        return round(float(permuted[h10 - 1].mean() / normal), 3)

    ratios = {"shuffled_action_ratio_h10": shuffled_ratio(NeuralForecaster(model, features, model.history))}
    if model.blend is not None:  # the network's own, without the blend's pull toward the present
        unblended = NeuralForecaster(Unblended(model), features, model.history)
        ratios["shuffled_action_ratio_h10_unblended"] = shuffled_ratio(unblended)
    with torch.no_grad():
        frames = windows.frames(slice(None), slice(model.history - model.camera_frames, model.history))
        z = model.encode(windows.features[:, : model.history], frames)
    return {
        "coverage90": {str(h): round(float(coverage[h - 1].mean()), 4) for h in horizons},
        "coverage90_per_sensor_h10": [round(float(c), 4) for c in coverage[h10 - 1]],
        **ratios,
        "latent": latent_health(z[:, : model.latent_dim]),
    }
