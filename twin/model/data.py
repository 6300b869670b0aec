"""Training data for the world model: episodes at the control rate, features, windows, splits.

An :class:`Episode` is one contiguous recording at the model's control rate (30 Hz by default):
``obs`` (T + 1, n_sensors) float64 in SI units, ``actions`` (T, n_actuators) float64 (the action
held between ``obs[t]`` and ``obs[t + 1]``) and optionally ``frames`` (T + 1, 64, 64, 3) uint8.

Models never see SI units: :class:`FeatureMap` turns observations into normalised features
(``(x - mean) / std`` per sensor; a periodic sensor, an angle in [-pi, pi), becomes
``(sin, cos)``) and actions into [-1, 1] by their actuator bounds. Its statistics come from the
training episodes and are saved with the model. Numpy stays here; tensors start at
:func:`make_windows`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from bridge import StreamSchema
from twin.model.encoders import FrameReadings

CONTROL_HZ = 30.0


@dataclass(frozen=True, slots=True)
class Episode:
    """One recording: ``obs`` (T+1, S) SI, ``actions`` (T, A) SI, ``frames`` (T+1, H, W, 3) uint8."""

    obs: np.ndarray
    actions: np.ndarray
    frames: np.ndarray | None = None
    extra: np.ndarray | None = None
    """Optional ground truth not in ``obs`` (T+1, E), e.g. object poses for camera probes."""

    def __post_init__(self) -> None:
        if self.obs.ndim != 2 or self.actions.ndim != 2 or len(self.obs) != len(self.actions) + 1:
            raise ValueError(
                f"Episode: obs {self.obs.shape} must be (T+1, S) and actions {self.actions.shape} (T, A)"
            )
        if self.frames is not None and len(self.frames) != len(self.obs):
            raise ValueError(f"Episode: frames {self.frames.shape} must have {len(self.obs)} entries")

    @property
    def steps(self) -> int:
        return len(self.actions)


@dataclass(frozen=True, slots=True)
class Dataset:
    """Episodes of one asset, its schema and where they came from (``lineage``, JSON-able)."""

    schema: StreamSchema
    episodes: tuple[Episode, ...]
    control_hz: float = CONTROL_HZ
    lineage: dict[str, Any] = field(default_factory=dict)

    @property
    def transitions(self) -> int:
        return sum(e.steps for e in self.episodes)

    @property
    def has_frames(self) -> bool:
        return bool(self.episodes) and all(e.frames is not None for e in self.episodes)

    def subset(self, indices: np.ndarray | list[int]) -> Dataset:
        return Dataset(self.schema, tuple(self.episodes[i] for i in indices), self.control_hz, self.lineage)


@dataclass(frozen=True, slots=True)
class Splits:
    """Episode-level split: fit on ``train``, early-stop on ``val``, conformal on ``calib``,
    report on ``test`` (never seen by any fitting step)."""

    train: Dataset
    val: Dataset
    calib: Dataset
    test: Dataset


def split_episodes(
    data: Dataset, seed: int, fractions: tuple[float, float, float] = (0.1, 0.1, 0.15)
) -> Splits:
    """Shuffle episodes with ``seed`` and cut (val, calib, test) fractions; the rest trains."""
    n = len(data.episodes)
    if n < 4:
        raise ValueError(f"need at least 4 episodes to split train/val/calib/test, got {n}")
    order = np.random.default_rng([seed, 7]).permutation(n)
    counts = [max(1, round(f * n)) for f in fractions]
    v, c, t = counts
    return Splits(
        train=data.subset(order[v + c + t :]),
        val=data.subset(order[:v]),
        calib=data.subset(order[v : v + c]),
        test=data.subset(order[v + c : v + c + t]),
    )


def periodic_mask(schema: StreamSchema) -> np.ndarray:
    """Sensors that are angles wrapped to [-pi, pi) (unit rad, bounds +-pi): (S,) bool."""
    return np.array(
        [
            s.unit == "rad" and math.isclose(s.low, -math.pi) and math.isclose(s.high, math.pi)
            for s in schema.sensors
        ]
    )


def wrap_difference(delta: np.ndarray, periodic: np.ndarray) -> np.ndarray:
    """``delta`` (..., S) with periodic sensors' differences wrapped to [-pi, pi)."""
    wrapped = (delta + math.pi) % (2 * math.pi) - math.pi
    return np.where(periodic, wrapped, delta)


QUATERNION = ("_qx", "_qy", "_qz", "_qw")


def quaternion_groups(schema: StreamSchema) -> np.ndarray:
    """Indices (G, 4) of unit quaternions among the sensors: four consecutive sensors named
    ``<prefix>_qx, _qy, _qz, _qw`` (xyzw, as PyBullet and the scenes write them)."""
    names = [s.name for s in schema.sensors]
    groups = [
        [i, i + 1, i + 2, i + 3]
        for i in range(len(names) - 3)
        if all(names[i + k].endswith(q) for k, q in enumerate(QUATERNION))
        and len({names[i + k][:-3] for k in range(4)}) == 1
    ]
    return np.asarray(groups, dtype=np.int64).reshape(-1, 4)


def reference_quaternions(obs: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per group, the mean orientation of ``obs`` (N, S): the principal eigenvector of the mean of
    q q^T (sign-invariant), with its largest component positive. (G, 4)."""
    refs = []
    for group in groups:
        q = obs[:, group]
        _, vectors = np.linalg.eigh(q.T @ q / max(len(q), 1))
        ref = vectors[:, -1]
        refs.append(ref * np.sign(ref[np.argmax(np.abs(ref))]))
    return np.asarray(refs, dtype=np.float64).reshape(-1, 4)


def align_quaternions(values: np.ndarray, groups: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """``values`` (..., S) with each quaternion group's sign flipped where its dot product with
    its reference in ``refs`` (..., G, 4), broadcastable, is negative (q and -q are the same
    orientation)."""
    if not len(groups):
        return values
    out = np.array(values, dtype=np.float64, copy=True)
    for g, group in enumerate(groups):
        dot = (out[..., group] * refs[..., g, :]).sum(axis=-1, keepdims=True)
        out[..., group] = np.where(dot < 0, -out[..., group], out[..., group])
    return out


@dataclass(frozen=True, slots=True)
class FeatureMap:
    """Sensor values <-> normalised features, actions -> [-1, 1]. Saved with every model."""

    mean: np.ndarray
    std: np.ndarray
    periodic: np.ndarray
    action_low: np.ndarray
    action_high: np.ndarray
    quaternions: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), dtype=np.int64))
    """(G, 4) sensor indices of unit quaternions (xyzw); empty in checkpoints from before."""
    quaternion_ref: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    """(G, 4) reference orientation per group: features use the sign of q nearer to it."""

    @classmethod
    def fit(cls, data: Dataset) -> FeatureMap:
        obs = np.concatenate([e.obs for e in data.episodes])
        obs = obs[np.isfinite(obs).all(axis=1)]
        groups = quaternion_groups(data.schema)
        refs = reference_quaternions(obs, groups)
        obs = align_quaternions(obs, groups, refs)
        std = obs.std(axis=0)
        std = np.where(std > 1e-9, std, 1.0)
        low = np.array([a.low for a in data.schema.actuators], dtype=np.float64)
        high = np.array([a.high for a in data.schema.actuators], dtype=np.float64)
        finite = np.isfinite(low) & np.isfinite(high)
        low, high = np.where(finite, low, -1.0), np.where(finite, high, 1.0)
        return cls(obs.mean(axis=0), std, periodic_mask(data.schema), low, high, groups, refs)

    @property
    def n_sensors(self) -> int:
        return len(self.mean)

    @property
    def n_features(self) -> int:
        return len(self.mean) + 2 * int(self.periodic.sum())

    def features(self, obs: np.ndarray) -> np.ndarray:
        """(..., S) SI -> (..., F) float32: normalised values, then (sin, cos) of periodic ones.
        Quaternions take the sign nearer their reference orientation first (continuous features)."""
        obs = align_quaternions(obs, self.quaternions, self.quaternion_ref)
        z = (obs - self.mean) / self.std
        z = np.where(self.periodic, 0.0, z)
        angles = obs[..., self.periodic]
        return np.concatenate([z, np.sin(angles), np.cos(angles)], axis=-1).astype(np.float32)

    def values(self, features: np.ndarray) -> np.ndarray:
        """(..., F) -> (..., S) SI (inverse of :meth:`features`)."""
        features = np.asarray(features, dtype=np.float64)
        s, p = self.n_sensors, int(self.periodic.sum())
        obs = features[..., :s] * self.std + self.mean
        if p:
            angles = np.arctan2(features[..., s : s + p], features[..., s + p : s + 2 * p])
            obs[..., self.periodic] = angles
        return obs

    def columns(self, sensors: np.ndarray) -> tuple[int, ...]:
        """Feature columns that carry the sensors selected by ``sensors`` (S,) bool."""
        sensors = np.asarray(sensors, dtype=bool)
        periodic = np.flatnonzero(self.periodic)
        cols = list(np.flatnonzero(sensors))
        for k, i in enumerate(periodic):
            if sensors[i]:
                cols += [self.n_sensors + k, self.n_sensors + len(periodic) + k]
        return tuple(int(c) for c in sorted(cols))

    def actions(self, actions: np.ndarray) -> np.ndarray:
        """(..., A) SI -> (..., A) float32 in [-1, 1]."""
        mid, half = (self.action_high + self.action_low) / 2, (self.action_high - self.action_low) / 2
        return ((actions - mid) / half).astype(np.float32)

    def normalised_error(self, predicted: np.ndarray, observed: np.ndarray) -> np.ndarray:
        """(predicted - observed) / std per sensor, periodic differences wrapped, each predicted
        quaternion taken with the sign nearer the observed one (q and -q agree): (..., S)."""
        predicted = align_quaternions(predicted, self.quaternions, observed[..., self.quaternions])
        return wrap_difference(predicted - observed, self.periodic) / self.std

    def to_dict(self) -> dict[str, list[Any]]:
        keys = ("mean", "std", "periodic", "action_low", "action_high", "quaternions", "quaternion_ref")
        return {k: getattr(self, k).tolist() for k in keys}

    @classmethod
    def from_dict(cls, d: dict[str, list[Any]]) -> FeatureMap:
        return cls(
            np.asarray(d["mean"], dtype=np.float64),
            np.asarray(d["std"], dtype=np.float64),
            np.asarray(d["periodic"], dtype=bool),
            np.asarray(d["action_low"], dtype=np.float64),
            np.asarray(d["action_high"], dtype=np.float64),
            np.asarray(d.get("quaternions", []), dtype=np.int64).reshape(-1, 4),
            np.asarray(d.get("quaternion_ref", []), dtype=np.float64).reshape(-1, 4),
        )


@dataclass(frozen=True, slots=True)
class Windows:
    """Training/evaluation windows as tensors, one row per start time t.

    ``features`` (N, history + horizon, F): observation features from t - history + 1 to
    t + horizon; ``actions`` (N, horizon, A) in [-1, 1]: the actions held after t, t+1, ...;
    ``obs`` (N, history + horizon, S) SI float64 (numpy, for metrics in sensor units);
    ``extra`` (N, history + horizon, E) or None. Camera frames are not copied per window:
    ``frame_bank`` (M, 3, 64, 64) uint8 holds every frame once and ``frame_index``
    (N, history + horizon) points into it; :meth:`frames` gathers them for a few rows.
    ``frame_readings``: every bank frame as a keypoint camera reader read it, keypoints
    (M, 2K) and presence (M, K) or None, for windows encoded many times with the same weights
    (:func:`twin.model.evaluate.read_frames`); :meth:`frames` then gives those readings.
    """

    features: torch.Tensor
    actions: torch.Tensor
    obs: np.ndarray
    frame_bank: torch.Tensor | None = None
    frame_index: torch.Tensor | None = None
    extra: np.ndarray | None = None
    frame_readings: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def __len__(self) -> int:
        return len(self.features)

    @property
    def has_frames(self) -> bool:
        return self.frame_bank is not None

    def frames(
        self, rows: slice | torch.Tensor = slice(None), cols: slice = slice(None)
    ) -> torch.Tensor | FrameReadings | None:
        """Frames (n, len(cols), 3, 64, 64) uint8 of some rows and columns; with
        ``frame_readings``, their readings (:class:`~twin.model.encoders.FrameReadings`, stacks of
        len(cols) >= 2); or None."""
        if self.frame_bank is None or self.frame_index is None:
            return None
        index = self.frame_index[rows][:, cols]
        if self.frame_readings is not None:
            points, presence = self.frame_readings
            return FrameReadings(points, presence, index)
        return self.frame_bank[index]

    def take(self, index: torch.Tensor | np.ndarray) -> Windows:
        index_np = np.asarray(index)
        index_t = torch.as_tensor(index_np, dtype=torch.long)
        return Windows(
            self.features[index_t],
            self.actions[index_t],
            self.obs[index_np],
            self.frame_bank,
            None if self.frame_index is None else self.frame_index[index_t],
            None if self.extra is None else self.extra[index_np],
            self.frame_readings,
        )


def make_windows(
    data: Dataset, features: FeatureMap, history: int, horizon: int, stride: int = 1, frames: bool = False
) -> Windows:
    """Every window (history observed steps, then ``horizon`` future steps) inside an episode."""
    length = history + horizon
    feats, acts, obs, index, extra, bank = [], [], [], [], [], []
    offset = 0
    for episode in data.episodes:
        starts = np.arange(0, episode.steps + 1 - length + 1, stride)
        if frames:
            if episode.frames is None:
                raise ValueError("camera windows requested but an episode has no frames")
            bank.append(episode.frames)
        if len(starts):
            idx = starts[:, None] + np.arange(length)[None, :]
            feats.append(features.features(episode.obs)[idx])
            acts.append(features.actions(episode.actions)[idx[:, history - 1 : length - 1]])
            obs.append(episode.obs[idx])
            index.append(idx + offset)
            if episode.extra is not None:
                extra.append(episode.extra[idx])
        offset += len(episode.obs)
    if not feats:
        raise ValueError(f"no episode is long enough for windows of {length} steps")
    cat_obs = np.concatenate(obs)
    keep = np.isfinite(cat_obs).all(axis=(1, 2))
    frame_bank = frame_index = None
    if frames:
        frame_bank = torch.from_numpy(np.concatenate(bank)).permute(0, 3, 1, 2).contiguous()
        frame_index = torch.from_numpy(np.concatenate(index)[keep])
    return Windows(
        torch.from_numpy(np.concatenate(feats)[keep]),
        torch.from_numpy(np.concatenate(acts)[keep]),
        cat_obs[keep],
        frame_bank,
        frame_index,
        np.concatenate(extra)[keep] if extra and len(extra) == len(feats) else None,
    )
