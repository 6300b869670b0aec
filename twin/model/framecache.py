"""Reads each camera frame of a live stream once: a keypoint reader's per-frame readings, kept by
the frame's content.

A camera model with ``camera_frames = n`` encodes every step from the last n frames. In a live
stream the window slides one frame a step, so n - 1 of them were read the step before. The
keypoint reader (:class:`~twin.model.encoders.PixelKeypointEncoder`) reads each frame on its
own and only then pools over the stack, so those readings can be kept: a step reads its one
new frame and pools it with the n - 1 kept (on the arm's camera with 4 frames, most of the
encode+predict step is the reading; ``twin.model.speed`` times both).

Frames are recognised by their bytes (a 128-bit BLAKE2b digest), not by position, so a caller
passes whole windows as before and a frame repeated, skipped or replayed is still read right:
the result equals reading every frame again (``tests/model/test_framecache.py``). The
readings belong to the encoder's weights at the time of reading: :meth:`FrameCache.clear`
after changing them.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
import torch

from twin.model.encoders import FrameReadings, PixelKeypointEncoder


class FrameCache:
    """Per-frame readings of ``encoder`` for the last ``size`` distinct frames seen (least
    recently used dropped first). ``hits`` / ``misses`` count frames found / read."""

    def __init__(self, encoder: PixelKeypointEncoder, size: int = 8) -> None:
        if not isinstance(encoder, PixelKeypointEncoder):
            raise TypeError(
                f"FrameCache needs a PixelKeypointEncoder (it reads frames one by one), got "
                f"{type(encoder).__name__}"
            )
        if size < encoder.n_frames:
            raise ValueError(
                f"FrameCache(size={size}) must hold at least the {encoder.n_frames} frames a step reads"
            )
        self.encoder = encoder
        self.size = size
        self.hits = 0
        self.misses = 0
        self._kept: OrderedDict[bytes, tuple[torch.Tensor, torch.Tensor | None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    def clear(self) -> None:
        """Forget every reading (after the encoder's weights changed)."""
        self._kept.clear()

    @torch.no_grad()
    def readings(self, frames: np.ndarray) -> FrameReadings:
        """One window's frames (n, 64, 64, 3) uint8, oldest first, latest last (n >= the
        encoder's frames; its last n are read) -> :class:`FrameReadings` of one stack, reading
        only the frames not kept."""
        if frames.ndim != 4 or frames.dtype != np.uint8 or len(frames) < self.encoder.n_frames:
            raise ValueError(
                f"FrameCache reads one window's frames ({self.encoder.n_frames}, H, W, 3) uint8, got "
                f"{frames.shape} {frames.dtype}"
            )
        frames = frames[-self.encoder.n_frames :]
        keys = [hashlib.blake2b(frame.tobytes(), digest_size=16).digest() for frame in frames]
        new: dict[bytes, int] = {}  # a frame not kept -> where it first is in the window
        for i, key in enumerate(keys):
            if key not in self._kept:
                new.setdefault(key, i)
        if new:
            # NCHW in memory, as training reads them (data.make_windows): the reader's convolution
            # on a channels-last view took 324 us a frame against 251 (1 thread), and its rounding
            # would differ from training's
            rows = frames[list(new.values())]  # a copy (M, H, W, 3)
            pixels = torch.from_numpy(rows).permute(0, 3, 1, 2).contiguous()
            points, presence = self.encoder.read(pixels)
            for row, key in enumerate(new):
                self._kept[key] = (points[row], None if presence is None else presence[row])
        self.misses += len(new)
        self.hits += len(keys) - len(new)
        for key in keys:
            self._kept.move_to_end(key)
        while len(self._kept) > self.size:
            self._kept.popitem(last=False)
        kept = [self._kept[key] for key in keys]
        presence = None if kept[0][1] is None else torch.stack([p for _, p in kept])  # type: ignore[misc]
        stacks = torch.arange(len(keys)).reshape(1, -1)
        return FrameReadings(torch.stack([p for p, _ in kept]), presence, stacks)
