"""Honest baselines and the common forecasting interface every model is evaluated through.

A :class:`Forecaster` maps evaluation windows to predicted sensor values in SI units:
``forecast(windows, horizon) -> (N, horizon, S)``, from the ``history`` observed steps and the
actions actually applied afterwards. Baselines:

* :class:`Persistence`: x_{t+h} = x_t;
* :class:`ConstantVelocity`: x_{t+h} = x_t + h (x_t - x_{t-1}) (angles wrapped);
* :class:`LinearARX`: x_{t+1} - x_t = W [x_{t-p+1..t}, a_t, 1] in feature space, fitted by
  (ridge) least squares on the training windows, rolled out;
* :class:`SensorMLP`: the same residual MLP predictor, but in feature space (no latent, no JEPA);
* :class:`SensorGRU`: a GRU that warms up on the history and rolls out feeding its own
  predictions, trained on the same multi-step loss (recurrent, no JEPA objective).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch import nn

from twin.model.data import FeatureMap, Windows, align_quaternions, wrap_difference
from twin.model.encoders import mlp


class Forecaster(Protocol):
    history: int

    def forecast(self, windows: Windows, horizon: int) -> np.ndarray:
        """Predicted sensor values (N, horizon, S) SI after each window's ``history`` steps."""
        ...


class Persistence:
    history = 1

    def __init__(self, history: int) -> None:
        self.history = history

    def forecast(self, windows: Windows, horizon: int) -> np.ndarray:
        last = windows.obs[:, self.history - 1]
        return np.repeat(last[:, None], horizon, axis=1)


class ConstantVelocity:
    def __init__(self, history: int, features: FeatureMap) -> None:
        self.history = history
        self.periodic = features.periodic
        self.quaternions = features.quaternions

    def forecast(self, windows: Windows, horizon: int) -> np.ndarray:
        last, prev = windows.obs[:, self.history - 1], windows.obs[:, self.history - 2]
        prev = align_quaternions(prev, self.quaternions, last[..., self.quaternions])
        velocity = wrap_difference(last - prev, self.periodic)
        steps = np.arange(1, horizon + 1)[None, :, None]
        out = last[:, None] + steps * velocity[:, None]
        return np.where(self.periodic, wrap_difference(out, self.periodic), out)


class NeuralForecaster:
    """Adapts a torch model with ``forecast_features(features, frames, actions)`` to SI."""

    def __init__(self, model: nn.Module, features: FeatureMap, history: int, batch: int = 2048) -> None:
        self.model = model
        self.features = features
        self.history = history
        self.batch = batch

    @torch.no_grad()
    def forecast_features(
        self, windows: Windows, horizon: int, actions: torch.Tensor | None = None
    ) -> torch.Tensor:
        self.model.eval()
        h = self.history
        actions = windows.actions[:, :horizon] if actions is None else actions
        out = []
        for i in range(0, len(windows), self.batch):
            feats = windows.features[i : i + self.batch, :h]
            frames = windows.frames(slice(i, i + self.batch), slice(0, h))  # the encoder reads its last
            out.append(self.model.forecast_features(feats, frames, actions[i : i + self.batch]))
        return torch.cat(out)

    def forecast(self, windows: Windows, horizon: int, actions: torch.Tensor | None = None) -> np.ndarray:
        return self.features.values(self.forecast_features(windows, horizon, actions).numpy())


class LinearARX(nn.Module):
    """Feature-space ARX: next = last + W [window (history*F), action (A), 1]."""

    def __init__(self, n_features: int, n_actions: int, history: int) -> None:
        super().__init__()
        self.history = history
        self.weight = nn.Parameter(
            torch.zeros(history * n_features + n_actions + 1, n_features), requires_grad=False
        )

    def fit(self, windows: Windows, ridge: float = 1e-4) -> LinearARX:
        h = self.history
        x = self._design(windows.features[:, :h], windows.actions[:, 0]).double()
        y = (windows.features[:, h] - windows.features[:, h - 1]).double()
        gram = x.T @ x + ridge * len(x) * torch.eye(x.shape[1], dtype=torch.float64)
        self.weight.copy_(torch.linalg.solve(gram, x.T @ y).float())
        return self

    @staticmethod
    def _design(window: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        ones = torch.ones(len(window), 1, dtype=window.dtype)
        return torch.cat([window.flatten(1), action, ones], dim=1)

    def forecast_features(
        self, features: torch.Tensor, frames: object, actions: torch.Tensor
    ) -> torch.Tensor:
        window, out = features, []
        for k in range(actions.shape[1]):
            nxt = window[:, -1] + self._design(window, actions[:, k]) @ self.weight
            out.append(nxt)
            window = torch.cat([window[:, 1:], nxt[:, None]], dim=1)
        return torch.stack(out, dim=1)


class SensorMLP(nn.Module):
    """Residual MLP in feature space: next = last + f(window, action), rolled out."""

    def __init__(self, n_features: int, n_actions: int, history: int, hidden: int = 128) -> None:
        super().__init__()
        self.history = history
        self.net = mlp([history * n_features + n_actions, hidden, hidden, hidden, n_features])

    def forecast_features(
        self, features: torch.Tensor, frames: object, actions: torch.Tensor
    ) -> torch.Tensor:
        window, out = features, []
        for k in range(actions.shape[1]):
            nxt = window[:, -1] + self.net(torch.cat([window.flatten(1), actions[:, k]], dim=1))
            out.append(nxt)
            window = torch.cat([window[:, 1:], nxt[:, None]], dim=1)
        return torch.stack(out, dim=1)

    def __repr__(self) -> str:
        return f"SensorMLP(params={sum(p.numel() for p in self.parameters()):,})"


class SensorGRU(nn.Module):
    """GRU over (features, action) steps; warm-up on the history, then fed its own predictions."""

    def __init__(self, n_features: int, n_actions: int, history: int, hidden: int = 128) -> None:
        super().__init__()
        self.history = history
        self.n_actions = n_actions
        self.warmup = nn.GRU(n_features, hidden, batch_first=True)
        self.cell = nn.GRUCell(n_features + n_actions, hidden)
        self.head = nn.Linear(hidden, n_features)

    def forecast_features(
        self, features: torch.Tensor, frames: object, actions: torch.Tensor
    ) -> torch.Tensor:
        _, state = self.warmup(features)
        state, last, out = state[0], features[:, -1], []
        for k in range(actions.shape[1]):
            state = self.cell(torch.cat([last, actions[:, k]], dim=1), state)
            last = last + self.head(state)
            out.append(last)
        return torch.stack(out, dim=1)

    def __repr__(self) -> str:
        return f"SensorGRU(params={sum(p.numel() for p in self.parameters()):,})"
