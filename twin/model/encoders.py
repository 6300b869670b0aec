"""Encoders: an observation window (sensor features, optionally camera frames) -> one latent z.

* :class:`SensorEncoder`: MLP over the flattened window of the last ``history`` feature vectors
  (B, history, F) -> (B, D). The window lets one latent carry velocities and phases that a
  single sample cannot show.
* :class:`CameraEncoder`: a small strided CNN, (B, 3, 64, 64) uint8 -> (B, D), on the latest
  frame and the difference to the previous one (motion).
* :class:`FusedEncoder`: sum of the available encoders' embeddings, then LayerNorm-free linear
  mixing; ``sensors=False`` makes it camera-only; ``carry=True`` appends the latest observed
  features (hidden columns zeroed) to the learned embedding.
* :class:`ActionEncoder`: actions in [-1, 1] (B, A) -> (B, E) for FiLM conditioning.
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn


def mlp(sizes: list[int], activation: type[nn.Module] = nn.SiLU) -> nn.Sequential:
    """Linear layers of ``sizes`` with ``activation`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class SensorEncoder(nn.Module):
    """(B, history, F) normalised features -> (B, latent_dim)."""

    def __init__(
        self,
        n_features: int,
        history: int,
        latent_dim: int,
        hidden: int,
        hidden_columns: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        self.history = history
        self.net = mlp([n_features * history, hidden, hidden, latent_dim])
        keep = torch.ones(n_features)
        keep[list(hidden_columns)] = 0.0
        self.register_buffer("keep", keep, persistent=False)  # not in checkpoints: from the config

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        return self.net((window * self.keep).flatten(1))


class CameraEncoder(nn.Module):
    """(B, 2, 3, 64, 64) uint8 (previous, latest frame) -> (B, latent_dim)."""

    def __init__(self, latent_dim: int, channels: int = 32) -> None:
        super().__init__()
        c = channels
        self.net = nn.Sequential(
            nn.Conv2d(6, c, 4, stride=2, padding=1),  # 32x32
            nn.SiLU(),
            nn.Conv2d(c, c, 4, stride=2, padding=1),  # 16x16
            nn.SiLU(),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1),  # 8x8
            nn.SiLU(),
            nn.Conv2d(2 * c, 2 * c, 4, stride=2, padding=1),  # 4x4
            nn.SiLU(),
            nn.Flatten(),
            nn.Linear(2 * c * 16, latent_dim),
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        pixels = frames.float() / 255.0
        latest, previous = pixels[:, -1], pixels[:, -2]
        return self.net(torch.cat([latest - 0.5, latest - previous], dim=1))


class FusedEncoder(nn.Module):
    """Observation window -> latent z (B, D): sensor MLP and/or camera CNN, summed and mixed.

    ``encode(features, frames)``: features (B, history, F); frames (B, >=2, 3, 64, 64) uint8 or
    None. Either part may be absent (``sensor=None`` is a camera-only encoder). ``carry``: z is
    (B, latent_dim + F), the embedding followed by the latest features the sensor encoder sees.
    """

    def __init__(
        self,
        latent_dim: int,
        sensor: SensorEncoder | None,
        camera: CameraEncoder | None,
        carry: bool = False,
    ) -> None:
        super().__init__()
        if sensor is None and camera is None:
            raise ValueError("FusedEncoder needs a sensor encoder, a camera encoder or both")
        if carry and sensor is None:
            raise ValueError("FusedEncoder(carry=True) needs a sensor encoder (it carries its features)")
        self.carry = carry
        self.sensor = sensor
        self.camera = camera
        self.latent_dim = latent_dim
        self.history = sensor.history if sensor is not None else 2
        self.mix = nn.Sequential(nn.SiLU(), nn.Linear(latent_dim, latent_dim)) if sensor and camera else None

    def forward(self, features: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        parts = []
        if self.sensor is not None:
            parts.append(self.sensor(features[:, -self.history :]))
        if self.camera is not None:
            if frames is None:
                raise ValueError("this encoder needs camera frames (B, 2, 3, 64, 64)")
            parts.append(self.camera(frames[:, -2:]))
        z = parts[0] if len(parts) == 1 else parts[0] + parts[1]
        z = z if self.mix is None else z + self.mix(z)
        if self.carry:
            assert self.sensor is not None
            z = torch.cat([z, features[:, -1] * self.sensor.keep], dim=-1)
        return z


class ActionEncoder(nn.Module):
    """(..., A) actions in [-1, 1] -> (..., E) embedding."""

    def __init__(self, n_actions: int, embed_dim: int) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.net = mlp([n_actions, embed_dim, embed_dim])

    def forward(self, actions: torch.Tensor) -> torch.Tensor:
        return self.net(actions)
