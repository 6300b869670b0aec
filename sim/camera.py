"""Scene cameras: TinyRenderer images as their own streams (``camera``, optionally ``depth``).

``camera``: (height, width, 3) uint8 RGB. ``depth``: (height, width, 1) float32 metres along the
view ray's axis (linearised from PyBullet's z-buffer). Rendering cost follows the meshes in the
world (measured with pybullet 3.2.7: ~0.1-0.4 ms per 64x64 cartpole frame, ~3 ms for the KUKA with
pybullet_data's meshes, ~1.2 ms with the arm's coarse ones: `sim.meshes`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pybullet

from bridge import SensorSpec, StreamSchema


@dataclass(frozen=True, slots=True)
class CameraConfig:
    """A scene camera. ``rate_hz``: frames per simulated second (a decimation of physics)."""

    width: int = 64
    height: int = 64
    rate_hz: float = 10.0
    depth: bool = False
    fov_deg: float = 60.0
    near_m: float = 0.05
    far_m: float = 20.0

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 8 <= value <= 1024:
                raise ValueError(f"CameraConfig.{name}={value!r} must be an integer in [8, 1024] pixels")
        if not (math.isfinite(self.rate_hz) and self.rate_hz > 0):
            raise ValueError(f"CameraConfig.rate_hz={self.rate_hz!r} must be a positive number of Hz")
        if not 1 <= self.fov_deg <= 170:
            raise ValueError(f"CameraConfig.fov_deg={self.fov_deg!r} must be in [1, 170] degrees")
        if not 0 < self.near_m < self.far_m:
            raise ValueError(
                f"CameraConfig near_m={self.near_m!r}, far_m={self.far_m!r}: need 0 < near < far"
            )


@dataclass(frozen=True, slots=True)
class View:
    """Where a scene's camera looks from (world frame, metres)."""

    eye: tuple[float, float, float]
    target: tuple[float, float, float]
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)


def camera_schemas(asset: str, config: CameraConfig, description: str = "") -> list[StreamSchema]:
    rgb = StreamSchema(
        asset=asset,
        stream="camera",
        kind="image",
        dtype="|u1",
        shape=(config.height, config.width, 3),
        rate_hz=config.rate_hz,
        sensors=tuple(SensorSpec(c, "1", 0, 255) for c in ("red", "green", "blue")),
        description=description or "RGB camera, TinyRenderer",
    )
    if not config.depth:
        return [rgb]
    depth = StreamSchema(
        asset=asset,
        stream="depth",
        kind="image",
        dtype="<f4",
        shape=(config.height, config.width, 1),
        rate_hz=config.rate_hz,
        sensors=(SensorSpec("depth", "m", 0.0, config.far_m),),
        description="depth along the camera axis, metres",
    )
    return [rgb, depth]


class Camera:
    """Renders one view of a world with TinyRenderer."""

    def __init__(self, client: object, config: CameraConfig, view: View) -> None:
        self.client = client
        self.config = config
        self.view = view
        self.view_matrix = client.computeViewMatrix(view.eye, view.target, view.up)  # type: ignore[attr-defined]
        self.projection = client.computeProjectionMatrixFOV(  # type: ignore[attr-defined]
            config.fov_deg, config.width / config.height, config.near_m, config.far_m
        )

    def render(self, occlusion: float = 0.0) -> tuple[np.ndarray, np.ndarray | None]:
        """(rgb (H, W, 3) uint8, depth (H, W, 1) float32 metres or None)."""
        c = self.config
        _, _, rgba, zbuf, _ = self.client.getCameraImage(  # type: ignore[attr-defined]
            c.width,
            c.height,
            self.view_matrix,
            self.projection,
            renderer=pybullet.ER_TINY_RENDERER,
            flags=pybullet.ER_NO_SEGMENTATION_MASK,
        )
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(c.height, c.width, 4)[:, :, :3].copy()
        depth = None
        if c.depth:
            z = np.asarray(zbuf, dtype=np.float32).reshape(c.height, c.width, 1)
            depth = (c.far_m * c.near_m / (c.far_m - (c.far_m - c.near_m) * z)).astype(np.float32)
        if occlusion > 0:
            cols = round(occlusion * c.width)
            rgb[:, :cols] = 0
            if depth is not None:
                depth[:, :cols] = c.near_m
        return rgb, depth
