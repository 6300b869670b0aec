"""What the live worker, planners and scenarios call: a loaded world model in SI units.

    model = TwinModel.load("cartpole")            # registry name, "name:version" or a path
    model.check(stream_schema)                    # SchemaMismatch if the stream is not the trained one
    z = model.encode(obs_window)                  # (history, S) SI -> (D,) latent
    f = model.forecast(obs_window, actions)       # actions (H, A) SI -> Forecast: values, low, high
    s = model.surprise(f, step=1, observed=obs, obs_window=new_window)

numpy in, numpy out; torch stays inside. Steps are control steps at ``control_hz`` (30 Hz):
the observation window is the last ``history`` observations sampled at that rate, and
``actions[k]`` is held from step k to k + 1. Bands are the calibrated ``level`` (90%) bands.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bridge import StreamSchema
from twin.model.checkpoint import Checkpoint, check_schema, load_checkpoint
from twin.model.encoders import FrameReadings, PixelKeypointEncoder
from twin.model.framecache import FrameCache


@dataclass(frozen=True, slots=True)
class Forecast:
    """Predicted future, one row per control step t+1..t+H: ``values``, ``low``, ``high``
    (H, S) SI; ``latents`` (H, D); ``scale`` (H, S) expected |error| in training stds."""

    values: np.ndarray
    low: np.ndarray
    high: np.ndarray
    latents: np.ndarray
    scale: np.ndarray


def checkpoint_path(ref: str | Path, engine=None) -> Path:
    """The checkpoint file of a path or a registry name / ``name:version`` (looked up in SQL:
    ``engine``, else the configured database); LookupError if neither."""
    path = Path(ref)
    if path.exists():
        return path
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.orm import Session

    from twin.model.registry import find_model
    from twin.settings import database_url
    from twin.store import make_engine

    own = engine is None
    engine = engine or make_engine(database_url())
    try:
        with Session(engine) as session:
            row = find_model(session, str(ref))
    except SQLAlchemyError as exc:  # no registry there (a fresh database) or none reachable
        raise LookupError(
            f"no checkpoint file {str(ref)!r}, and the model registry could not be read "
            f"({exc.__class__.__name__}: {str(exc).splitlines()[0][:200]})"
        ) from None
    finally:
        if own:
            engine.dispose()
    if row is None:
        raise LookupError(f"no checkpoint file or registered model named {str(ref)!r}")
    return Path(row.path)


class TwinModel:
    """A world model for one asset's ``state`` stream (and camera, if it was trained with one)."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        self.checkpoint = checkpoint
        self.model = checkpoint.model.eval()
        self.features = checkpoint.features
        self.schema = checkpoint.schema
        self.bands = checkpoint.bands
        self.history = self.model.history
        self.control_hz = checkpoint.control_hz
        self.sensors = [s.name for s in self.schema.sensors]
        self.horizon = self.bands.horizon
        camera = self.model.encoder.camera
        self.frame_cache = (
            FrameCache(camera, size=2 * camera.n_frames) if isinstance(camera, PixelKeypointEncoder) else None
        )
        """A keypoint camera's per-frame readings of recent frames: a window of one stream reads
        only its new frame (:class:`twin.model.framecache.FrameCache`); None without one."""

    @classmethod
    def load(cls, ref: str | Path, stream: StreamSchema | None = None, engine=None) -> TwinModel:
        """From a checkpoint path, or a registry name / ``name:version`` (looked up in SQL)."""
        return cls(load_checkpoint(checkpoint_path(ref, engine), stream))

    def check(self, stream: StreamSchema) -> None:
        """Raise :class:`twin.model.checkpoint.SchemaMismatch` if ``stream`` is not the trained one."""
        check_schema(self.schema, stream)

    def _window(self, obs_window: np.ndarray) -> torch.Tensor:
        window = np.asarray(obs_window, dtype=np.float64)
        single = window.ndim == 2
        window = window[None] if single else window
        if window.shape[1:] != (self.history, len(self.sensors)):
            raise ValueError(
                f"observation window must be (history={self.history}, sensors={len(self.sensors)}) "
                f"or (B, {self.history}, {len(self.sensors)}), got {np.shape(obs_window)}"
            )
        return torch.from_numpy(self.features.features(window))

    def _frames(self, frames: np.ndarray | None) -> torch.Tensor | FrameReadings | None:
        if frames is None:
            if self.model.config.camera:
                raise ValueError(
                    "this model was trained with a camera: pass frames "
                    f"({self.model.camera_frames}, 64, 64, 3) uint8, the latest last"
                )
            return None
        array = np.asarray(frames, dtype=np.uint8)
        array = array[None] if array.ndim == 4 else array
        if self.model.config.camera and (array.ndim != 5 or array.shape[1] < self.model.camera_frames):
            raise ValueError(
                f"frames must be ({self.model.camera_frames}, 64, 64, 3) or (B, {self.model.camera_frames}, "
                f"64, 64, 3) uint8, the latest last; got {np.shape(frames)}"
            )
        if self.frame_cache is not None and len(array) == 1:  # one window: read its new frames only
            return self.frame_cache.readings(array[0])
        return torch.from_numpy(array).permute(0, 1, 4, 2, 3).contiguous()

    @torch.no_grad()
    def encode(self, obs_window: np.ndarray, frames: np.ndarray | None = None) -> np.ndarray:
        """(history, S) or (B, history, S) SI [+ frames (n, 64, 64, 3), n = the model's
        ``camera_frames``] -> latent (D,) or (B, D). One window's frames go through
        :attr:`frame_cache` where the model reads keypoints: the frames seen in the last windows
        are not read again (the same latent as reading them all)."""
        z = self.model.encode(self._window(obs_window), self._frames(frames)).numpy()
        return z[0] if np.ndim(obs_window) == 2 else z

    @torch.no_grad()
    def predict_latents(self, z: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Latent (D,) or (B, D), actions (H, A) or (B, H, A) SI -> latents (H, D) or (B, H, D)."""
        single = np.ndim(z) == 1
        z_t = torch.as_tensor(np.atleast_2d(z), dtype=torch.float32)
        a = np.asarray(actions, dtype=np.float64)
        a_t = torch.from_numpy(self.features.actions(a[None] if a.ndim == 2 else a))
        if len(a_t) != len(z_t):
            a_t = a_t.expand(len(z_t), -1, -1)
        out = self.model.rollout(z_t, a_t).numpy()
        return out[0] if single else out

    @torch.no_grad()
    def read(self, latents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Latents (..., D) -> (values (..., S) SI, error scale (..., S))."""
        z = torch.as_tensor(latents, dtype=torch.float32)
        return self.features.values(self.model.read(z).numpy()), self.model.error_scale(z).numpy()

    @torch.no_grad()
    def read_forecast(self, z: np.ndarray, latents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A rollout read as a forecast: the latent it started from (D,) or (B, D) and its
        latents (H, D) or (B, H, D) -> (values SI, error scale) shaped like ``latents`` less D,
        through the model's horizon blend (:meth:`JepaWorldModel.read_forecast`)."""
        single = np.ndim(z) == 1
        z0 = torch.as_tensor(np.atleast_2d(z), dtype=torch.float32)
        zs = torch.as_tensor(latents, dtype=torch.float32)
        zs = zs[None] if single else zs
        values = self.features.values(self.model.read_forecast(z0, zs).numpy())
        scale = self.model.error_scale(zs).numpy()
        return (values[0], scale[0]) if single else (values, scale)

    def predict(self, z: np.ndarray, actions: np.ndarray) -> Forecast:
        """From a latent (D,) and actions (H, A) SI: the future with its bands (H <= horizon)."""
        if len(actions) > self.horizon:
            raise ValueError(f"bands are calibrated up to {self.horizon} steps, asked for {len(actions)}")
        latents = self.predict_latents(z, actions)
        values, scale = self.read_forecast(z, latents)
        half = self.bands.half_width(scale[None], self.features.std)[0]
        low, high = values - half, values + half
        return Forecast(values, low, high, latents, scale)

    def forecast(
        self, obs_window: np.ndarray, actions: np.ndarray, frames: np.ndarray | None = None
    ) -> Forecast:
        """Encode the window and predict ``len(actions)`` steps ahead with 90% bands."""
        return self.predict(self.encode(obs_window, frames), actions)

    def surprise(
        self,
        forecast: Forecast,
        step: int,
        observed: np.ndarray,
        obs_window: np.ndarray | None = None,
        frames: np.ndarray | None = None,
    ) -> dict[str, object]:
        """How unexpected ``observed`` (S,) SI is, ``step`` (1-based) steps into ``forecast``.

        ``sensor``: per sensor |error| / band half-width (> 1: outside the band); ``score``: their
        max; ``latent``: with the window ending at ``observed``, the RMS distance per latent
        dimension between its encoding and the predicted latent (latents have ~unit std).
        """
        k = step - 1
        error = self.features.normalised_error(forecast.values[k], np.asarray(observed, dtype=np.float64))
        half = self.bands.quantiles[k] * forecast.scale[k]
        ratio = np.abs(error) / np.maximum(half, 1e-9)
        out: dict[str, object] = {
            "sensor": dict(zip(self.sensors, np.round(ratio, 4).tolist(), strict=True)),
            "score": float(ratio.max()),
        }
        if obs_window is not None:
            z = self.encode(obs_window, frames)
            out["latent"] = float(np.sqrt(np.mean((z - forecast.latents[k]) ** 2)))
        return out

    def __repr__(self) -> str:
        c = self.checkpoint
        return f"TwinModel({c.name or 'unnamed'}:{c.version}, asset={self.schema.asset!r}, {self.model!r})"
