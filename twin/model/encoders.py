"""Encoders: an observation window (sensor features, optionally camera frames) -> one latent z.

* :class:`SensorEncoder`: MLP over the flattened window of the last ``history`` feature vectors
  (B, history, F) -> (B, D). The window lets one latent carry velocities and phases that a
  single sample cannot show.
* :class:`CameraEncoder`: a small strided CNN, (B, 3, 64, 64) uint8 -> (B, D), on the latest
  frame and the difference to the previous one (motion), optionally with keypoints: the
  expected image position of each of ``keypoints`` feature maps at 32 x 32
  (:class:`SpatialSoftmax`), so where a small object is survives the downsampling.
* :class:`PixelKeypointEncoder`: keypoints only, (B, n, 3, 64, 64) uint8 -> (B, D): a colour
  classifier of 2 x 2 pixel patches (maps at 32 x 32), each map read by
  :class:`SpatialSoftmax`, for the last n frames (2 by default; or pooled over them by
  presence); nothing else of
  the image reaches the latent, so the encoder can say where coloured objects are and cannot
  tell training scenes apart by anything else. It reads each frame on its own
  (:meth:`~PixelKeypointEncoder.read`) before pooling over a stack
  (:meth:`~PixelKeypointEncoder.pool`), so a live stream reads each new frame once
  (:class:`FrameReadings`).
* :class:`FusedEncoder`: sum of the available encoders' embeddings, then LayerNorm-free linear
  mixing; ``sensors=False`` makes it camera-only; ``carry=True`` appends the latest observed
  features (hidden columns zeroed) to the learned embedding.
* :class:`ActionEncoder`: actions in [-1, 1] (B, A) -> (B, E) for FiLM conditioning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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
    """(B, history, F) normalised features -> (B, latent_dim). ``clip`` > 0: each feature is
    clamped to ``[-clip, clip]`` first (see ``ModelConfig.input_clip``)."""

    def __init__(
        self,
        n_features: int,
        history: int,
        latent_dim: int,
        hidden: int,
        hidden_columns: tuple[int, ...] = (),
        clip: float = 0.0,
    ) -> None:
        super().__init__()
        self.history = history
        self.clip = clip
        self.net = mlp([n_features * history, hidden, hidden, latent_dim])
        keep = torch.ones(n_features)
        keep[list(hidden_columns)] = 0.0
        self.register_buffer("keep", keep, persistent=False)  # not in checkpoints: from the config

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        window = window * self.keep
        if self.clip:
            window = window.clamp(-self.clip, self.clip)
        return self.net(window.flatten(1))


@dataclass(frozen=True, slots=True)
class FrameStacks:
    """Stacks of consecutive frames that share frames, each frame stored once: ``frames``
    (M, 3, 64, 64) uint8, ``stacks`` (N, k) long indices into them, oldest first, latest last
    (k >= 2; k = 2: (previous, latest) pairs). A training window's 9 overlapping pairs hold 10
    frames, not 18: an encoder that reads frames one by one (:class:`PixelKeypointEncoder`)
    reads each once."""

    frames: torch.Tensor
    stacks: torch.Tensor

    def __post_init__(self) -> None:
        if self.frames.ndim != 4 or self.stacks.ndim != 2 or self.stacks.shape[1] < 2:
            raise ValueError(
                f"FrameStacks needs frames (M, 3, H, W) and stacks (N, k >= 2), got "
                f"{tuple(self.frames.shape)} and {tuple(self.stacks.shape)}"
            )

    def __len__(self) -> int:
        return len(self.stacks)

    def gather(self) -> torch.Tensor:
        """(N, k, 3, H, W): the stacks as separate frames."""
        return self.frames[self.stacks]


@dataclass(frozen=True, slots=True)
class FrameReadings:
    """Frames already read one by one by a :class:`PixelKeypointEncoder`
    (:meth:`PixelKeypointEncoder.read`), waiting to be pooled over stacks: ``points`` (M, 2K)
    keypoints in [-1, 1], ``presence`` (M, K) or None (what each map's lit-up strength is, for
    presence pooling), ``stacks`` (N, n) long indices into them, oldest first, latest last. A
    live stream reads each new frame once and pools it with the readings of the frames before
    (:class:`twin.model.framecache.FrameCache`)."""

    points: torch.Tensor
    presence: torch.Tensor | None
    stacks: torch.Tensor

    def __post_init__(self) -> None:
        if self.points.ndim != 2 or self.stacks.ndim != 2 or self.stacks.shape[1] < 2:
            raise ValueError(
                f"FrameReadings needs points (M, 2K) and stacks (N, n >= 2), got "
                f"{tuple(self.points.shape)} and {tuple(self.stacks.shape)}"
            )

    def __len__(self) -> int:
        return len(self.stacks)

    def last(self, n: int) -> FrameReadings:
        """The same readings with each stack cut to its last ``n`` frames (unchanged where a
        stack holds n or fewer)."""
        if self.stacks.shape[1] <= n:
            return self
        return FrameReadings(self.points, self.presence, self.stacks[:, -n:])


class SpatialSoftmax(nn.Module):
    """Keypoints: (B, K, H, W) feature maps -> (B, 2K) the expected (x, y) of each map's softmax
    over its pixels, in [-1, 1] (x to the right, y down), with a learned temperature.

    A strided CNN that ends in a few coarse cells keeps *what* it saw better than *where*: a
    4-pixel object at 64 x 64 is a fraction of a cell at 4 x 4. The soft arg-max of a map that
    lights up on the object gives its position to a fraction of a pixel, differentiably (the
    spatial soft-argmax of deep visuomotor policies and spatial autoencoders)."""

    def __init__(self, height: int, width: int, log_temperature: float = 0.0) -> None:
        super().__init__()
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        self.register_buffer("grid", torch.stack([xs.flatten(), ys.flatten()], dim=1), persistent=False)
        self.log_temperature = nn.Parameter(torch.tensor(float(log_temperature)))

    def scale(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, K, H, W) logits -> (B, K, HW) logits over the temperature. A product with
        ``exp(-log_temperature)``, not a quotient: a quotient's backward to the temperature costs
        three passes over the maps (on the arm's camera, half the keypoint reader's time)."""
        return maps.flatten(2) * (-self.log_temperature).exp()

    def points(self, scaled: torch.Tensor) -> torch.Tensor:
        """(B, K, HW) scaled logits (:meth:`scale`) -> (B, 2K) keypoints."""
        b, k = scaled.shape[:2]
        return (torch.softmax(scaled, dim=-1) @ self.grid).reshape(b, 2 * k)

    def points_and_presence(self, scaled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(M, K, HW) scaled logits (:meth:`scale`) -> keypoints (M, 2K), as :meth:`points`, and
        each map's :meth:`presence` (M, K), from one pass of ``exp`` over the maps: the
        softmax's weights are the presence's clamped terms over their sum (the same values within
        float32 rounding, 6e-8 on a trained reader's keypoints; gradients likewise). One frame's
        reading on 1 thread: 213-312 us against 347-484 for ``torch.softmax`` and the presence
        each taking their own max and ``exp``. Only where the presence is wanted: for keypoints
        alone :meth:`points`' fused softmax is faster (forward and backward of 128 x 16 maps of
        32 x 32 on 1 thread, mild maps: 6 ms against 30; sharp ones: 42 against 33)."""
        top, terms = self._clamped_terms(scaled)
        total = terms.sum(dim=-1)
        m, k = scaled.shape[:2]
        points = ((terms / total[..., None]) @ self.grid).reshape(m, 2 * k)
        return points, self._presence_of(top, total, scaled.shape[-1])

    @staticmethod
    def presence(scaled: torch.Tensor) -> torch.Tensor:
        """(B, K, HW) logits over the temperature (:meth:`scale`) -> (B, K): 0.1 x
        the log of the mean of ``exp(logit / temperature)`` over the map's cells: near the
        highest logit where a few cells stand out (what the soft-argmax follows), near the mean
        logit where none does.

        Computed as ``max + log(sum(exp(max(logit - max, -80))))``, not ``torch.logsumexp``:
        a sharp map's cells lie hundreds below its peak, and ``exp`` of a value whose result
        underflows (below e^-87, float32's smallest normal) takes a slow path on x86 CPUs,
        10x the time of an ordinary one. Clamped at -80 the terms stay normal and change the
        sum by at most n x e^-80 for n cells (the peak's own term is 1): nothing in float32,
        values equal to ``torch.logsumexp``'s, gradients within its rounding (0 for clamped
        cells, whose true gradient is below e^-80); forward and backward on a camera training
        batch (383 frames x 16 maps x 1,024 cells, 2 cores) took 27 ms against 151 ms. The max
        is detached: the shift's gradient cancels (up to that n x e^-80). Logits must be
        finite (a row of -inf or a +inf gives NaN here); the convolutions' outputs are.
        """
        top, terms = SpatialSoftmax._clamped_terms(scaled)
        return SpatialSoftmax._presence_of(top, terms.sum(dim=-1), scaled.shape[-1])

    @staticmethod
    def _clamped_terms(scaled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each map's detached max (M, K, 1) and ``exp(max(logit - max, -80))`` (M, K, HW)."""
        top = scaled.detach().amax(dim=-1, keepdim=True)
        return top, torch.exp((scaled - top).clamp_min(-80.0))

    @staticmethod
    def _presence_of(top: torch.Tensor, total: torch.Tensor, cells: int) -> torch.Tensor:
        return 0.1 * (total.log() + top.squeeze(-1) - math.log(cells))

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.points(self.scale(maps))


class CameraEncoder(nn.Module):
    """(B, 2, 3, 64, 64) uint8 (previous, latest frame) -> (B, latent_dim). ``keypoints``: maps
    read by :class:`SpatialSoftmax` at 32 x 32 beside the strided path (0: none)."""

    def __init__(self, latent_dim: int, channels: int = 32, keypoints: int = 0) -> None:
        super().__init__()
        c = channels
        self.net = nn.Sequential(
            nn.Conv2d(6, c, 4, stride=2, padding=1),  # 32x32 (the keypoints read this)
            nn.SiLU(),
            nn.Conv2d(c, c, 4, stride=2, padding=1),  # 16x16
            nn.SiLU(),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1),  # 8x8
            nn.SiLU(),
            nn.Conv2d(2 * c, 2 * c, 4, stride=2, padding=1),  # 4x4
            nn.SiLU(),
            nn.Flatten(),
            nn.Linear(2 * c * 16 + 2 * keypoints, latent_dim),
        )
        self.points = None
        if keypoints:
            self.points = nn.Sequential(
                nn.Conv2d(c, c, 3, padding=1), nn.SiLU(), nn.Conv2d(c, keypoints, 1), SpatialSoftmax(32, 32)
            )

    def forward(self, frames: torch.Tensor | FrameStacks) -> torch.Tensor:
        frames = frames.gather() if isinstance(frames, FrameStacks) else frames
        pixels = frames.float() / 255.0
        latest, previous = pixels[:, -1], pixels[:, -2]
        stem = self.net[:2](torch.cat([latest - 0.5, latest - previous], dim=1))
        coarse = self.net[2:-1](stem)
        if self.points is not None:
            coarse = torch.cat([coarse, self.points(stem)], dim=1)
        return self.net[-1](coarse)


class PixelKeypointEncoder(nn.Module):
    """(B, n, 3, 64, 64) uint8 (the last ``frames`` frames, oldest first; n = 2: previous,
    latest) -> (B, latent_dim), from keypoints only.

    Each 2 x 2 pixel patch goes through the same small MLP (a 2x2 stride-2 convolution, then
    1x1 convolutions, ``channels`` wide) to ``keypoints`` logits at 32 x 32;
    :class:`SpatialSoftmax` turns each map into the expected (x, y) of what lit it up. Every
    frame is read with the same weights, and a linear layer mixes the coordinates into the
    latent. ``pooling``: ``"concat"`` mixes all ``2 * frames * keypoints`` coordinates (where,
    and where a step ago); ``"presence"`` first pools each keypoint over the frames,
    weighted by how strongly its map lit up in each (a softmax over frames of the map's
    log-mean-exp, see :meth:`SpatialSoftmax.presence`, times a learned gain, plus a learned bias per frame),
    so the latent gets ``2 * keypoints`` coordinates: where the colour is, read from the frame
    that shows it best (with more than two ``frames``, one that shows it best in the last
    few: a cube the arm passes over for a frame or two is still read).

    Why keypoints: on the arm's camera, a strided CNN reading 34 training episodes memorised
    them (train loss 0.005, test R^2 < 0), while a patch colour classifier cannot tell scenes
    apart by anything but where its colours are. Patches, not pixels: the same accuracy at a
    quarter of the cost (1.5 s -> 0.17 s forward and backward for 288 frame pairs on 2 cores).
    The temperature starts sharp (e^-3): a soft-argmax starting near uniform points at the
    centre and learns slowly. Why presence pooling: read out linearly, it generalised to unseen
    cube placements best (supervised cube x, y from frames, 1,000 steps: test R^2 0.963,
    against 0.950 with both frames' coordinates and 0.940 with an MLP head; docs/model.md,
    "The arm's camera")."""

    def __init__(
        self,
        latent_dim: int,
        channels: int = 16,
        keypoints: int = 8,
        size: int = 64,
        pooling: str = "concat",
        frames: int = 2,
    ) -> None:
        super().__init__()
        if pooling not in KEYPOINT_POOLING:
            raise ValueError(f"PixelKeypointEncoder(pooling={pooling!r}) must be one of {KEYPOINT_POOLING}")
        if not isinstance(frames, int) or frames < 2:
            raise ValueError(f"PixelKeypointEncoder(frames={frames!r}) must be an integer >= 2")
        c = channels
        self.pooling = pooling
        self.n_frames = frames
        self.maps = nn.Sequential(
            nn.Conv2d(3, c, 2, stride=2), nn.SiLU(), nn.Conv2d(c, c, 1), nn.SiLU(), nn.Conv2d(c, keypoints, 1)
        )
        self.points = SpatialSoftmax(size // 2, size // 2, log_temperature=-3.0)
        self.frame_bias: nn.Parameter | None = None
        if pooling == "presence":  # the latest frame ahead at the start, each older one less
            self.frame_bias = nn.Parameter(torch.arange(1.0 - frames, 1.0))  # [-1, 0] for a pair
            self.presence_gain = nn.Parameter(torch.tensor(1.0))
        self.out = nn.Linear((1 if pooling == "presence" else frames) * 2 * keypoints, latent_dim)

    def read(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Each frame on its own: (M, 3, 64, 64) uint8 -> keypoints (M, 2K) in [-1, 1] and, for
        presence pooling, each map's presence (M, K) (:meth:`SpatialSoftmax.presence`; None otherwise)."""
        pixels = frames.float().mul_(1 / 255.0).sub_(0.5)  # no gradient: in place
        scaled = self.points.scale(self.maps(pixels))  # (M, K, H/2 * W/2)
        if self.frame_bias is None:
            return self.points.points(scaled), None
        return self.points.points_and_presence(scaled)

    def pool(self, readings: FrameReadings) -> torch.Tensor:
        """Read frames pooled over their stacks of n -> (N, latent_dim)."""
        n, stacks = self.n_frames, readings.stacks
        if stacks.shape[1] != n:
            raise ValueError(f"PixelKeypointEncoder reads stacks of {n} frames, got {stacks.shape[1]}")
        b = len(stacks)
        points = readings.points[stacks]  # (B, n, 2K)
        if self.frame_bias is None:
            return self.out(points.reshape(b, -1))  # (B, n frames x 2K)
        if readings.presence is None:
            raise ValueError("presence pooling needs FrameReadings.presence (read by this encoder)")
        k = points.shape[-1] // 2
        logits = self.presence_gain * readings.presence[stacks] + self.frame_bias[:, None]  # (B, n, K)
        weights = torch.softmax(logits, dim=1)
        pooled = (points.reshape(b, n, k, 2) * weights[..., None]).sum(dim=1)  # (B, K, 2)
        return self.out(pooled.reshape(b, 2 * k))

    def forward(self, frames: torch.Tensor | FrameStacks | FrameReadings) -> torch.Tensor:
        """(B, >=n, 3, 64, 64) uint8, the last ``n = frames`` (the constructor's) read, or
        :class:`FrameStacks` of n (each shared frame read once), or :class:`FrameReadings` of
        n or more (frames read before; the last n of each stack pooled) -> (B, latent_dim)."""
        if isinstance(frames, FrameReadings):
            return self.pool(frames.last(self.n_frames))
        n = self.n_frames
        if isinstance(frames, FrameStacks):  # a stack of another length: pool() says so
            unique, stacks = frames.frames, frames.stacks
        else:
            if frames.shape[1] < n:
                raise ValueError(f"PixelKeypointEncoder reads the last {n} frames, got {frames.shape[1]}")
            unique = frames[:, -n:].flatten(0, 1)  # (nB, 3, H, W): oldest ... latest of each
            stacks = torch.arange(len(unique), device=unique.device).reshape(-1, n)
        points, presence = self.read(unique)  # every shared frame read once
        return self.pool(FrameReadings(points, presence, stacks))


KEYPOINT_POOLING = ("concat", "presence")


class FusedEncoder(nn.Module):
    """Observation window -> latent z (B, D): sensor MLP and/or camera CNN, summed and mixed.

    ``encode(features, frames)``: features (B, history, F); frames (B, >=2, 3, 64, 64) uint8 or
    None. Either part may be absent (``sensor=None`` is a camera-only encoder). ``carry``: z is
    (B, latent_dim + F), the embedding followed by the latest features the sensor encoder sees.
    ``camera_dims``: the camera's embedding fills the last ``camera_dims`` of the learned part
    and the sensors' the rest, side by side instead of summed (``ModelConfig.camera_dims``).
    """

    def __init__(
        self,
        latent_dim: int,
        sensor: SensorEncoder | None,
        camera: CameraEncoder | PixelKeypointEncoder | None,
        carry: bool = False,
        camera_dims: int = 0,
    ) -> None:
        super().__init__()
        if camera_dims and (sensor is None or camera is None or not 0 < camera_dims < latent_dim):
            raise ValueError(
                f"FusedEncoder(camera_dims={camera_dims}) needs both encoders and 0 < camera_dims < "
                f"latent_dim={latent_dim}"
            )
        self.camera_dims = camera_dims
        if sensor is None and camera is None:
            raise ValueError("FusedEncoder needs a sensor encoder, a camera encoder or both")
        if carry and sensor is None:
            raise ValueError("FusedEncoder(carry=True) needs a sensor encoder (it carries its features)")
        self.carry = carry
        self.sensor = sensor
        self.camera = camera
        self.latent_dim = latent_dim
        self.frames = camera.n_frames if isinstance(camera, PixelKeypointEncoder) else 2
        """Frames the camera reads per window, the latest last (the window's last ``frames``)."""
        self.history = sensor.history if sensor is not None else self.frames
        mixed = sensor is not None and camera is not None and not camera_dims
        self.mix = nn.Sequential(nn.SiLU(), nn.Linear(latent_dim, latent_dim)) if mixed else None

    def forward(
        self, features: torch.Tensor, frames: torch.Tensor | FrameStacks | FrameReadings | None = None
    ) -> torch.Tensor:
        parts = []
        if self.sensor is not None:
            parts.append(self.sensor(features[:, -self.history :]))
        if self.camera is not None:
            if frames is None:
                raise ValueError(f"this encoder needs camera frames (B, {self.frames}, 3, 64, 64)")
            stacked = isinstance(frames, FrameStacks | FrameReadings)
            parts.append(self.camera(frames if stacked else frames[:, -self.frames :]))
        if self.camera_dims:  # [sensor embedding, camera embedding], side by side
            z = torch.cat([parts[0][..., : -self.camera_dims], parts[1][..., -self.camera_dims :]], dim=-1)
        else:
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
