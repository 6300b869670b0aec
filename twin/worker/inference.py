"""The micro-batched model adapter: the ONLY module of the worker that touches ``twin.model``.

One :class:`ModelAdapter` per loaded model serves every asset matched to it: a batch of B
observation windows is encoded, the held actions inferred and the future rolled out in one
forward pass each. numpy in, numpy out; SI units at this boundary.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bridge import SensorSpec, StreamSchema
from twin.model.api import TwinModel
from twin.model.checkpoint import SchemaMismatch
from twin.worker.config import DetectorConfig
from twin.worker.profile import DetectorProfile

log = logging.getLogger(__name__)

__all__ = ["BatchForecast", "ModelAdapter", "SchemaMismatch", "load_models"]

MIN_ERROR_SCALE = 1e-6
"""Floor of a predicted error scale (training stds) that a residual is divided by."""


@dataclass(frozen=True, slots=True)
class BatchForecast:
    """For B assets: ``z`` (B, D) latents of the current windows, ``actions`` (B, A) SI held,
    and t+1..t+H: ``latents`` (B, H, D), ``values``/``low``/``high`` (B, H, S) SI, ``scale``
    (B, H, S) the error the model expects, in training stds (its variance head). ``next_values``
    (B, S) SI: the model's own one-step prediction, read from its first predicted latent without
    the horizon blend that ``values`` has: the detector's evidence (its profile and its
    benchmark are of the model's dynamics)."""

    z: np.ndarray
    actions: np.ndarray
    latents: np.ndarray
    values: np.ndarray
    low: np.ndarray
    high: np.ndarray
    scale: np.ndarray
    next_values: np.ndarray


def range_limits(
    sensors: tuple[SensorSpec, ...] | list[SensorSpec], wrapped: np.ndarray, quaternions: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) (S,) SI range ends the detector treats as end stops: each sensor's schema
    range, but +-inf for a wrapped angle (its ends are one point) and for the components of a
    unit quaternion (``quaternions`` (G, 4) sensor indices: +-1 is an orientation, not a stop)."""
    free = np.array(wrapped, dtype=bool)
    free[np.asarray(quaternions, dtype=np.int64).ravel()] = True
    low = np.where(free, -np.inf, [sp.low for sp in sensors]).astype(np.float64)
    high = np.where(free, np.inf, [sp.high for sp in sensors]).astype(np.float64)
    return low, high


class ModelAdapter:
    """A loaded world model seen by the worker: batched encode, forecast, errors."""

    def __init__(self, model: TwinModel, name: str) -> None:
        self.model = model
        self.name = name
        self.history = model.history
        self.horizon = model.horizon
        self.control_hz = float(model.control_hz)
        self.sensors = tuple(model.sensors)
        self.std = np.asarray(model.features.std, dtype=np.float64)
        self.periods = np.where(np.asarray(model.features.periodic, bool), 2 * np.pi / self.std, np.inf)
        """Per sensor, the period of a wrapped (angle) residual in training stds (inf: none)."""
        self.level = float(model.bands.level)
        features = model.features
        self._mid = (features.action_high + features.action_low) / 2
        self._half = (features.action_high - features.action_low) / 2
        self.latent_dim = int(model.model.z_dim)
        self.n_actions = len(self._mid)
        sensors = model.schema.sensors
        self.limits = range_limits(sensors, np.isfinite(self.periods), features.quaternions)
        """(low, high) (S,) SI: each sensor's range in the trained schema (+-inf for wrapped
        angles and quaternion components), the detector's range limits."""
        stored = model.checkpoint.detector
        self.profile: DetectorProfile | None = None
        try:
            self.profile = DetectorProfile.from_dict(stored) if stored else None
        except (TypeError, ValueError) as exc:  # written by another version: serve without it
            log.warning("%s: detector profile not readable (%s); per-asset calibration alone", name, exc)
        """The detector's reference profile stored with the checkpoint (``twin calibrate-detector``)."""

    def profile_for(self, config: DetectorConfig) -> tuple[DetectorProfile | None, str]:
        """The detector profile for a detector run under ``config`` (None: it has none, or it was
        fitted under another config) and a line saying which."""
        if self.profile is None:
            return None, (
                f"{self.name} has no detector profile: alarm levels from per-asset calibration alone "
                f"(expect tens of false alarms an hour; run `twin calibrate-detector {self.name}`)"
            )
        why = self.profile.mismatch(config)
        if why is not None:
            return None, (
                f"{self.name}: detector profile not used: {why} "
                f"(refit it: `twin calibrate-detector {self.name}`)"
            )
        p = self.profile
        return p, (
            f"{self.name}: detector profile from {p.hours:.2f} h of nominal reference ({p.runs} runs) "
            f"for {p.per_hour:g} false alarms/h"
        )

    @classmethod
    def load(cls, ref: str, engine: Engine | None = None) -> ModelAdapter:
        model = TwinModel.load(ref, engine=engine)
        checkpoint = model.checkpoint
        name = f"{checkpoint.name}:{checkpoint.version}" if checkpoint.name else Path(ref).stem
        return cls(model, name)

    def matches(self, schema: StreamSchema) -> str | None:
        """None if the model serves ``schema``; else why not."""
        if schema.kind != "vector":
            return f"{schema.kind} stream"
        try:
            self.model.check(schema)
        except SchemaMismatch as exc:
            return str(exc)
        return None

    def encode(self, windows: np.ndarray) -> np.ndarray:
        """(B, history, S) SI -> (B, D) float32."""
        return self.model.encode(windows).astype(np.float32)

    @torch.no_grad()
    def infer_actions(self, z_prev: np.ndarray, z: np.ndarray) -> np.ndarray:
        """The actions (B, A) SI that most likely led from ``z_prev`` to ``z`` (inverse dynamics)."""
        a = self.model.model.infer_action(torch.from_numpy(z_prev), torch.from_numpy(z)).numpy()
        return self._mid + np.clip(a, -1.0, 1.0) * self._half

    def forecast(
        self, windows: np.ndarray, z_prev: np.ndarray | None, held: np.ndarray | None, steps: int
    ) -> BatchForecast:
        """Encode B windows and roll out ``steps`` control steps with each asset's action held.

        ``held`` (B, A) SI actions known from the bus (NaN rows: unknown, inferred from
        ``z_prev`` (B, D) by inverse dynamics; NaN rows of ``z_prev``: zero action)."""
        if steps > self.horizon:
            raise ValueError(f"bands are calibrated up to {self.horizon} steps, asked for {steps}")
        z = self.encode(windows)
        b = len(z)
        actions = np.tile(self._mid, (b, 1)) if held is None else np.array(held, dtype=np.float64)
        unknown = np.isnan(actions).any(axis=1)
        if z_prev is not None and unknown.any():
            known_prev = unknown & np.isfinite(z_prev).all(axis=1)
            if known_prev.any():
                actions[known_prev] = self.infer_actions(z_prev[known_prev], z[known_prev])
        actions[np.isnan(actions).any(axis=1)] = self._mid
        plan = np.repeat(actions[:, None, :], steps, axis=1)
        latents = self.model.predict_latents(z, plan)
        values, scale = self.model.read_forecast(z, latents)
        scale = np.maximum(scale, MIN_ERROR_SCALE)
        half = self.model.bands.half_width(scale, self.std)
        own = values[:, 0] if self.model.model.blend is None else self.read(latents[:, 0])
        return BatchForecast(
            z, actions, latents.astype(np.float32), values, values - half, values + half, scale, own
        )

    def rollout_read(self, z: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Open loop: latents (B, D) and the actions (B, k, A) SI applied since -> the sensor
        values (B, S) SI predicted ``k`` steps later and their error scale (B, S) (training
        stds): the detector's multi-horizon evidence."""
        latents = self.model.predict_latents(np.asarray(z, dtype=np.float32), actions)
        return self.read_scaled(latents[:, -1])

    def advance(self, z: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """One control step of open-loop rollouts: latents (N, D), actions (N, A) SI -> (N, D)."""
        latents = self.model.predict_latents(np.asarray(z, dtype=np.float32), np.asarray(actions)[:, None])
        return latents[:, 0].astype(np.float32)

    def read(self, latents: np.ndarray) -> np.ndarray:
        """Latents (..., D) -> sensor values (..., S) SI."""
        return self.model.read(latents)[0]

    def read_scaled(self, latents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Latents (..., D) -> (sensor values (..., S) SI, the error the model expects of them
        (..., S) in training stds: its variance head, floored at :data:`MIN_ERROR_SCALE`)."""
        values, scale = self.model.read(latents)
        return values, np.maximum(scale, MIN_ERROR_SCALE)

    def normalised_error(self, predicted: np.ndarray, observed: np.ndarray) -> np.ndarray:
        """(observed - predicted) / training std per sensor, angles wrapped: (..., S)."""
        return -self.model.features.normalised_error(predicted, observed)

    def error(self, predicted: np.ndarray, observed: np.ndarray) -> np.ndarray:
        """observed - predicted in SI units, angles wrapped: (..., S)."""
        return self.normalised_error(predicted, observed) * self.std

    def baseline(self, name: str) -> torch.nn.Module | None:
        """A fitted sensor-space baseline stored with the checkpoint (``mlp``, ``linear``...)."""
        from twin.model.pipeline import restore_baselines

        states = self.model.checkpoint.baselines
        if name not in states:
            return None
        hidden = int(self.model.model.config.hidden)
        return restore_baselines({name: states[name]}, self.model.features, self.history, hidden)[name]

    def __repr__(self) -> str:
        return f"ModelAdapter({self.name!r}, history={self.history}, horizon={self.horizon})"


def registry_refs(engine: Engine) -> list[str]:
    """``name:version`` of the latest version of every registered model."""
    from twin.store.models import ModelRow

    with Session(engine) as session:
        latest = select(ModelRow.name, func.max(ModelRow.version)).group_by(ModelRow.name)
        return [f"{name}:{version}" for name, version in session.execute(latest)]


def load_models(refs: tuple[str, ...], engine: Engine | None) -> list[ModelAdapter]:
    """Load ``refs`` (empty: the registry's latest models); a ref that fails is logged and skipped."""
    if not refs and engine is not None:
        refs = tuple(registry_refs(engine))
    adapters = []
    for ref in refs:
        try:
            adapters.append(ModelAdapter.load(ref, engine))
        except (LookupError, OSError, ValueError) as exc:
            log.error("model %s not loaded: %s", ref, exc)
    return adapters


def adapted_descendants(
    engine: Engine, wanted: set[str], served: list[ModelAdapter]
) -> dict[str, ModelAdapter]:
    """The models among ``wanted`` (``name:version`` refs a stored snapshot names) that online
    adaptation derived from a served model (its registry ``lineage.adapted_from``, followed
    through earlier adaptations), loaded: a worker restarted with ``--model <version 1>`` then
    resumes an asset that adaptation had switched to version 3 on version 3, as before the
    restart, instead of starting it afresh. A ref that fails to load is logged and skipped."""
    from sqlalchemy.orm import Session

    from twin.model.registry import find_model

    names = {m.name for m in served}
    out: dict[str, ModelAdapter] = {}
    with Session(engine) as session:
        for ref in sorted(wanted - names):
            chain, seen = ref, set()
            while chain and chain not in names and chain not in seen:
                seen.add(chain)
                row = find_model(session, chain) if ":" in chain else None
                chain = (row.lineage or {}).get("adapted_from") if row is not None else None
            if chain not in names:
                continue
            try:
                out[ref] = ModelAdapter.load(ref, engine)
            except (LookupError, OSError, ValueError) as exc:
                log.error("adapted model %s (of %s) not loaded: %s", ref, chain, exc)
    return out
