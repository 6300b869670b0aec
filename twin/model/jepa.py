"""The JEPA world model: a protocol, its config and the model assembled from injected parts.

Shapes: B batch, H horizon (control steps), D latent, F sensor features, S sensors, A actuators,
``history`` observed steps per window. Features and actions are normalised (see
:class:`twin.model.data.FeatureMap`); SI units appear only at the boundary (:mod:`twin.model.api`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from bridge import SensorSpec
from twin.model.blend import HorizonBlend
from twin.model.data import FeatureMap
from twin.model.encoders import (
    KEYPOINT_POOLING,
    ActionEncoder,
    CameraEncoder,
    FrameReadings,
    FrameStacks,
    FusedEncoder,
    PixelKeypointEncoder,
    SensorEncoder,
)
from twin.model.predictor import CONDITIONING, InverseDynamics, LatentPredictor, Readout


@runtime_checkable
class WorldModel(Protocol):
    """What planners, the live worker and evaluation rely on."""

    history: int

    def encode(self, features: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        """Observation window -> latent: features (B, history, F), frames (B, n, 3, 64, 64) uint8
        (the window's last n >= camera_frames) or None -> z (B, D)."""
        ...

    def next(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """One control step: z (B, D), action (B, A) in [-1, 1] -> z_next (B, D)."""
        ...

    def rollout(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Unrolled future latents: z (B, D), actions (B, H, A) -> (B, H, D) for t+1..t+H."""
        ...

    def read(self, z: torch.Tensor) -> torch.Tensor:
        """Latent (..., D) -> sensor features (..., F)."""
        ...


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Sizes and parts of a :class:`JepaWorldModel`."""

    latent_dim: int = 32
    hidden: int = 128
    action_dim: int = 16
    history: int = 2
    predictor_layers: int = 2
    conditioning: str = "film"
    sensors: bool = True
    """Encode the sensor window (False with ``camera``: a camera-only model)."""
    camera: bool = False
    camera_channels: int = 16
    camera_keypoints: int = 0
    """Keypoint maps of the camera encoder (expected image positions, see
    :class:`~twin.model.encoders.SpatialSoftmax`); 0: none. Off by default: 16 on the arm's
    camera preset gave a cube probe R^2 of -0.80 against -0.43 without, in 278 s of training
    against 174 s (docs/model.md)."""
    camera_reader: str = "cnn"
    """The camera encoder: ``"cnn"`` (:class:`~twin.model.encoders.CameraEncoder`, a strided CNN,
    with ``camera_keypoints`` beside it) or ``"keypoints"``
    (:class:`~twin.model.encoders.PixelKeypointEncoder`: a colour classifier of 2 x 2 pixel
    patches read as ``camera_keypoints`` keypoints, nothing else; 8 when ``camera_keypoints``
    is 0; give it spare maps, several per object it must find: the arm's camera preset has 16
    for three cubes, see ``presets.SCENE_CAMERA_MODEL``)."""
    camera_dims: int = 0
    """With ``camera_only`` columns: the camera's embedding gets the last ``camera_dims``
    dimensions of the learned latent to itself (the sensors' embedding the others, side by side
    instead of summed), and the readout's MLP for the ``camera_only`` columns reads those
    dimensions only (added, as always, to the carried columns, which are zero at the encoder
    and hold what the predictor wrote after a step). 0: summed, and read from all of z. On the
    arm's camera the readout otherwise learned the cubes of the training episodes from the
    arm's own state (train R^2 0.79, test 0.13; docs/model.md, "The arm's camera")."""
    camera_frames: int = 2
    """Frames the camera encoder reads per window, the latest last (2: the latest and the one
    before; at most ``history``, the window's length). More than 2 only with
    ``camera_reader="keypoints"``, whose presence pooling reads each keypoint from the frame
    that shows it best: a cube the arm hides for a frame or two is read from an earlier one
    (docs/model.md, "Four frames for the arm's camera")."""
    keypoint_pooling: str = "concat"
    """With ``camera_reader="keypoints"``: ``"concat"`` puts both frames' keypoint coordinates
    into the latent, ``"presence"`` each keypoint's coordinates pooled over the frames by how
    strongly its map lit up (see :class:`~twin.model.encoders.PixelKeypointEncoder`)."""
    camera_readout: str = "mlp"
    """With ``camera_dims``: how the ``camera_only`` columns are read from the camera's
    dimensions, ``"mlp"`` or ``"linear"`` (a linear probe; see
    :class:`~twin.model.predictor.Readout`)."""
    camera_only: tuple[str, ...] = ()
    """Sensor name prefixes the model may learn only from the camera (e.g. ``("cube",)``: the
    arm's object poses): their features are zeroed at the encoder's input, still read out."""
    carry_observation: bool = True
    """Append the latest observed features (normalised; ``camera_only`` columns zeroed) to the
    learned latent, ``z = [e(window), x_t]`` (``latent_dim + F`` wide), and read the carried part
    as it is (an MLP reads only the ``camera_only`` columns): the latent keeps the present
    exactly instead of re-learning it, so the short-horizon error is the predictor's, not a
    read-out floor. The predictor rolls both parts forward; VICReg applies to the learned part
    only."""
    linear_path: bool = False
    """Add a linear path to the predictor's step, ``z + A z + B e(a) + f(z, e(a))`` (zero at
    the start; see :class:`~twin.model.predictor.LatentPredictor`)."""
    input_clip: float = 0.0
    """Clamp values to ``[-input_clip, input_clip]`` where the sensor encoder reads its window
    (normalised features) and where the predictor's MLP reads z (the carried features and the
    learned dimensions, whose std VICReg keeps near 1); the residual, the predictor's linear path,
    the readout, its error scale and the inverse-dynamics head read z as it is. A state far
    outside the training data (the arm's cube lying on the floor, 8 std below the table) then
    drives the dynamics as the edge of the data instead of driving every output off with it.
    0: off."""
    phase_from: tuple[str, ...] = ()
    """Angular-speed sensors (unit rad/s) that each turn a phase pair: the first ``2 *
    len(phase_from)`` learned dimensions, rotated at every predictor step through the angle the
    speed sweeps in one control step (see :class:`~twin.model.predictor.LatentPredictor`). For
    a rotating machine whose signals repeat once per turn of a shaft no sensor reports the
    angle of (the rotor's imbalance vibration, sampled at 30 Hz while the shaft turns 1-8 rad
    between samples): the encoder finds the phase from the window, the predictor integrates
    the measured speed exactly, and the MLP reads the turned pair. Needs ``carry_observation``
    (the speed is read from z). Empty: none (docs/model.md, "Phase pairs")."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "camera_only", tuple(self.camera_only))
        object.__setattr__(self, "phase_from", tuple(self.phase_from))
        if self.phase_from:
            named = all(isinstance(n, str) and n for n in self.phase_from)
            if not named or len(set(self.phase_from)) < len(self.phase_from):
                raise ValueError(f"ModelConfig.phase_from={self.phase_from!r} must name distinct sensors")
            if not self.carry_observation:
                raise ValueError("ModelConfig.phase_from needs carry_observation=True (speeds come from z)")
            if 2 * len(self.phase_from) > self.latent_dim - self.camera_dims:
                raise ValueError(
                    f"ModelConfig.phase_from={self.phase_from!r} needs {2 * len(self.phase_from)} learned "
                    f"dimensions, latent_dim={self.latent_dim} (camera_dims={self.camera_dims}) has fewer"
                )
        if self.camera_only and not self.camera:
            raise ValueError(f"ModelConfig.camera_only={self.camera_only!r} needs camera=True")
        if (
            not isinstance(self.camera_dims, int)
            or isinstance(self.camera_dims, bool)
            or self.camera_dims < 0
        ):
            raise ValueError(f"ModelConfig.camera_dims={self.camera_dims!r} must be an integer >= 0")
        if self.camera_dims and not (
            self.camera_only and self.carry_observation and 0 < self.camera_dims < self.latent_dim
        ):
            raise ValueError(
                f"ModelConfig.camera_dims={self.camera_dims!r} needs camera_only columns, "
                f"carry_observation=True and 0 < camera_dims < latent_dim={self.latent_dim}"
            )
        if self.keypoint_pooling not in KEYPOINT_POOLING:
            raise ValueError(
                f"ModelConfig.keypoint_pooling={self.keypoint_pooling!r} must be one of {KEYPOINT_POOLING}"
            )
        if self.keypoint_pooling != "concat" and self.camera_reader != "keypoints":
            raise ValueError(
                f"ModelConfig.keypoint_pooling={self.keypoint_pooling!r} needs camera_reader='keypoints'"
            )
        if self.camera_readout not in CAMERA_READOUTS:
            raise ValueError(
                f"ModelConfig.camera_readout={self.camera_readout!r} must be one of {CAMERA_READOUTS}"
            )
        if self.camera_readout != "mlp" and not self.camera_dims:
            raise ValueError(
                f"ModelConfig.camera_readout={self.camera_readout!r} reads the camera's dimensions: "
                "needs camera_dims > 0"
            )
        if not (math.isfinite(self.input_clip) and self.input_clip >= 0):
            raise ValueError(
                f"ModelConfig.input_clip={self.input_clip!r} must be a finite number >= 0 (0 is off)"
            )
        if self.camera_reader not in CAMERA_READERS:
            raise ValueError(
                f"ModelConfig.camera_reader={self.camera_reader!r} must be one of {CAMERA_READERS}"
            )
        if not isinstance(self.camera_keypoints, int) or self.camera_keypoints < 0:
            raise ValueError(f"ModelConfig.camera_keypoints={self.camera_keypoints!r} must be an int >= 0")
        for name in ("latent_dim", "hidden", "action_dim", "history", "predictor_layers", "camera_channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ModelConfig.{name}={value!r} must be an integer >= 1")
        if self.conditioning not in CONDITIONING:
            raise ValueError(f"ModelConfig.conditioning={self.conditioning!r} must be one of {CONDITIONING}")
        if not (self.sensors or self.camera):
            raise ValueError("ModelConfig: sensors=False needs camera=True (the model must see something)")
        if self.carry_observation and not self.sensors:
            raise ValueError(
                "ModelConfig.carry_observation=True needs sensors=True (it carries sensor features)"
            )
        if self.camera and self.history < 2:
            raise ValueError(f"ModelConfig.history={self.history!r} must be >= 2 with a camera (frame pairs)")
        if not isinstance(self.camera_frames, int) or not 2 <= self.camera_frames <= max(self.history, 2):
            raise ValueError(
                f"ModelConfig.camera_frames={self.camera_frames!r} must be an integer in [2, history="
                f"{self.history}] (a window holds history frames)"
            )
        if self.camera_frames > 2 and self.camera_reader != "keypoints":
            raise ValueError(
                f"ModelConfig.camera_frames={self.camera_frames!r} needs camera_reader='keypoints' "
                f"(the CNN reads the latest frame and its difference to the previous one)"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def z_dim(self, n_features: int) -> int:
        """Width of z for ``n_features`` sensor features: the learned part, then (with
        ``carry_observation``) the carried features."""
        return self.latent_dim + (n_features if self.carry_observation else 0)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """The config a checkpoint or registry row stored. Configs written before a field
        existed get the behaviour they were trained with, not today's default."""
        return cls(**{**LEGACY_DEFAULTS, **d})


CAMERA_READERS = ("cnn", "keypoints")
CAMERA_READOUTS = ("mlp", "linear")

LEGACY_DEFAULTS: dict[str, Any] = {
    "carry_observation": False,
    "keypoint_pooling": "concat",
    "camera_readout": "mlp",
    "input_clip": 0.0,
    "phase_from": (),
}
"""Fields added to :class:`ModelConfig` after checkpoints were written, with the value that
reproduces those checkpoints."""


class JepaWorldModel(nn.Module):
    """Encoder + action encoder + latent predictor + readout (+ inverse-dynamics head)."""

    def __init__(
        self,
        config: ModelConfig,
        encoder: FusedEncoder,
        action_encoder: ActionEncoder,
        predictor: LatentPredictor,
        readout: Readout,
        inverse: InverseDynamics,
    ) -> None:
        super().__init__()
        self.config = config
        self.history = config.history
        self.camera_frames = config.camera_frames if config.camera else 0
        """Frames per window the encoder reads (the window's last; 0 without a camera)."""
        self.encoder = encoder
        self.action_encoder = action_encoder
        self.predictor = predictor
        self.readout = readout
        self.inverse = inverse
        self.latent_dim = config.latent_dim
        """Width of the learned part of z (the VICReg-regularised dimensions)."""
        self.z_dim = config.z_dim(readout.n_features)
        """Width of z: the learned part, then (``carry_observation``) the observed features."""
        self.blend: HorizonBlend | None = None
        """Per-horizon correction of forecasts read from rollouts (fitted after training on
        held-out windows, :func:`~twin.model.blend.fit_blend`; None: forecasts as read)."""

    def encode(
        self, features: torch.Tensor, frames: torch.Tensor | FrameStacks | FrameReadings | None = None
    ) -> torch.Tensor:
        return self.encoder(features, frames)

    def next(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.predictor(z, self.action_encoder(action))

    def rollout(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.predictor.unroll(z, self.action_encoder(actions))

    def read(self, z: torch.Tensor) -> torch.Tensor:
        return self.readout(z)

    def error_scale(self, z: torch.Tensor) -> torch.Tensor:
        """Latent (..., D) -> expected |error| per sensor (..., S), normalised units."""
        return self.readout.error_scale(z)

    def infer_action(self, z: torch.Tensor, z_next: torch.Tensor) -> torch.Tensor:
        """Inverse dynamics: (B, D), (B, D) -> the action (B, A) that led from one to the other."""
        return self.inverse(z, z_next)

    def read_forecast(self, z: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """The forecast in features: ``z`` (B, D) the latent a rollout started from, ``latents``
        (B, H, D) its rollout -> (B, H, F), through the horizon blend when the model has one.
        Every forecast (evaluation, bands, ``TwinModel.predict``, the worker) reads here."""
        predicted = self.read(latents)
        return predicted if self.blend is None else self.blend(predicted, self.read(z))

    def forecast_features(
        self, features: torch.Tensor, frames: torch.Tensor | None, actions: torch.Tensor
    ) -> torch.Tensor:
        """features (B, history, F), frames (B, n, 3, 64, 64) or None (n >= camera_frames: the
        last are read), actions (B, H, A) ->
        predicted features (B, H, F)."""
        z = self.encode(features, frames)
        return self.read_forecast(z, self.rollout(z, actions))

    def __repr__(self) -> str:
        counts = {name: sum(p.numel() for p in part.parameters()) for name, part in self.named_children()}
        parts = ", ".join(f"{name}={n:,}" for name, n in counts.items())
        return f"JepaWorldModel(params={sum(counts.values()):,}: {parts})"


def camera_only_columns(
    config: ModelConfig, features: FeatureMap, sensor_names: list[str]
) -> tuple[int, ...]:
    """Feature columns of the sensors named by ``config.camera_only`` (prefixes)."""
    if not config.camera_only:
        return ()
    for prefix in config.camera_only:
        if not any(n.startswith(prefix) for n in sensor_names):
            raise ValueError(f"ModelConfig.camera_only: no sensor starts with {prefix!r}")
    return features.columns(np.array([n.startswith(config.camera_only) for n in sensor_names]))


def phase_columns(
    config: ModelConfig, features: FeatureMap, sensors: Sequence[SensorSpec], control_hz: float
) -> tuple[tuple[int, float, float], ...]:
    """Per sensor of ``config.phase_from``: (its column in z, rad per normalised unit per step,
    rad per step at its mean), the :class:`~twin.model.predictor.LatentPredictor`'s ``phase``.
    A name that is not an angular speed the encoder sees is a :class:`ValueError`."""
    names = [s.name for s in sensors]
    dt = 1.0 / control_hz
    out = []
    for name in config.phase_from:
        if name not in names:
            raise ValueError(f"ModelConfig.phase_from: no sensor named {name!r} (has: {', '.join(names)})")
        i = names.index(name)
        if sensors[i].unit != "rad/s" or features.periodic[i]:
            raise ValueError(
                f"ModelConfig.phase_from: sensor {name!r} is in {sensors[i].unit!r}, not a speed in rad/s"
            )
        if config.camera_only and name.startswith(config.camera_only):
            raise ValueError(f"ModelConfig.phase_from: {name!r} is camera_only: the encoder never sees it")
        column = features.columns(np.arange(len(names)) == i)[0]
        out.append((config.latent_dim + column, float(features.std[i]) * dt, float(features.mean[i]) * dt))
    return tuple(out)


def build_model(
    config: ModelConfig,
    n_features: int,
    n_sensors: int,
    n_actions: int,
    hidden_columns: tuple[int, ...] = (),
    phase: tuple[tuple[int, float, float], ...] = (),
) -> JepaWorldModel:
    """Assemble the default parts for ``config`` (tests and ablations inject their own).
    ``hidden_columns``: feature columns the sensor encoder never sees (see ``camera_only``);
    ``phase``: :func:`phase_columns` (one pair per ``config.phase_from`` sensor)."""
    if len(phase) != len(config.phase_from):
        raise ValueError(
            f"build_model: ModelConfig.phase_from names {len(config.phase_from)} sensors, "
            f"phase gives {len(phase)} (phase_columns makes it)"
        )
    d = config.latent_dim
    z_dim = config.z_dim(n_features)
    sensor = (
        SensorEncoder(n_features, config.history, d, config.hidden, hidden_columns, config.input_clip)
        if config.sensors
        else None
    )
    camera: CameraEncoder | PixelKeypointEncoder | None = None
    if config.camera and config.camera_reader == "keypoints":
        camera = PixelKeypointEncoder(
            d,
            config.camera_channels,
            config.camera_keypoints or 8,
            pooling=config.keypoint_pooling,
            frames=config.camera_frames,
        )
    elif config.camera:
        camera = CameraEncoder(d, config.camera_channels, config.camera_keypoints)
    return JepaWorldModel(
        config,
        FusedEncoder(d, sensor, camera, carry=config.carry_observation, camera_dims=config.camera_dims),
        ActionEncoder(n_actions, config.action_dim),
        LatentPredictor(
            z_dim,
            config.action_dim,
            config.hidden,
            config.predictor_layers,
            config.conditioning,
            config.linear_path,
            config.input_clip,
            phase,
        ),
        Readout(
            z_dim,
            n_features,
            n_sensors,
            config.hidden,
            config.carry_observation,
            hidden_columns,
            (d - config.camera_dims, d) if config.camera_dims else None,
            config.camera_readout == "linear",
        ),
        InverseDynamics(z_dim, n_actions, config.hidden),
    )
