"""Inference timings: one encode+predict step, batched imagined rollouts, and the same rollouts
in PyBullet with saveState/restoreState (what the world model replaces for planning)."""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import torch

from twin.model.api import TwinModel
from twin.model.encoders import PixelKeypointEncoder
from twin.model.framecache import FrameCache


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


@torch.no_grad()
def model_timings(model: TwinModel, candidates: int = 1000, steps: int = 30, seed: int = 0) -> dict:
    """Median ms: ``step_ms`` (encode one window + predict one step, batch 1),
    ``rollout_ms`` (``candidates`` action sequences x ``steps`` latent steps from one state),
    ``rollout_read_ms`` (the same plus reading every predicted latent into sensor units).

    With a camera, ``step_ms`` is a live stream's step: a new frame every step, the window's
    older frames as the model reads them then (a keypoint reader keeps their readings,
    :class:`~twin.model.framecache.FrameCache`; any other reader reads them all again), and
    ``step_cold_ms`` reads every frame of the window."""
    rng = np.random.default_rng(seed)
    f = model.features
    n_s, n_a = f.n_sensors, len(f.action_low)
    window = torch.from_numpy(f.features(f.mean + rng.standard_normal((1, model.history, n_s)) * f.std))
    action = torch.zeros(1, n_a)
    net = model.model.eval()
    out: dict[str, float] = {}
    frames = None
    if model.model.config.camera:
        n = model.model.camera_frames
        frames = torch.randint(0, 255, (1, n, 3, 64, 64), dtype=torch.uint8)
        out["step_cold_ms"] = round(_median_ms(lambda: net.next(net.encode(window, frames), action), 200), 4)
        stream = rng.integers(0, 256, (n + 202, 64, 64, 3), dtype=np.uint8)  # one new frame a call
        latest = iter(range(n, len(stream) + 1))
        camera = net.encoder.camera
        cache = FrameCache(camera, size=2 * n) if isinstance(camera, PixelKeypointEncoder) else None

        def stream_step() -> None:
            end = next(latest)
            if cache is None:
                seen = torch.from_numpy(stream[end - n : end]).permute(0, 3, 1, 2)[None]
                net.next(net.encode(window, seen), action)
            else:
                net.next(net.encode(window, cache.readings(stream[end - n : end])), action)

        out["step_ms"] = round(_median_ms(stream_step, 200), 4)
    else:
        out["step_ms"] = round(_median_ms(lambda: net.next(net.encode(window, None), action), 200), 4)

    plans = torch.from_numpy(rng.uniform(-1, 1, (candidates, steps, n_a)).astype(np.float32))
    z0 = net.encode(window, frames)

    def rollout() -> None:
        net.rollout(z0.expand(candidates, -1), plans)

    def rollout_read() -> None:
        start = z0.expand(candidates, -1)
        net.read_forecast(start, net.rollout(start, plans))

    out["rollout_ms"] = round(_median_ms(rollout, 15), 2)
    out["rollout_read_ms"] = round(_median_ms(rollout_read, 15), 2)
    return out


def sim_rollout_ms(
    scene_name: str, candidates: int = 1000, steps: int = 30, control_hz: float = 30.0, seed: int = 0
) -> float:
    """Wall ms to roll ``candidates`` random action sequences x ``steps`` control steps forward
    in PyBullet from one state, restoring the snapshot (saveState/restoreState) before each."""
    from sim.registry import make_scene
    from sim.scene import SceneConfig

    rng = np.random.default_rng(seed)
    with make_scene(scene_name, SceneConfig(seed=seed)) as scene:
        schema = scene.schema()
        ticks = max(1, round(schema.rate_hz / control_hz))
        low = np.array([a.low for a in schema.actuators])
        high = np.array([a.high for a in schema.actuators])
        plans = rng.uniform(low, high, (candidates, steps, len(low)))
        for _ in range(30):
            scene.step(scene.control())
        snapshot = scene.save_state()
        started = time.perf_counter()
        for plan in plans:
            scene.restore_state(snapshot)
            for action in plan:
                for _ in range(ticks):
                    scene.step(action)
                scene.observe()
        elapsed = (time.perf_counter() - started) * 1e3
    return round(elapsed, 1)


def timings(model: TwinModel, scene_name: str) -> dict[str, Any]:
    out: dict[str, Any] = dict(model_timings(model))
    out["sim_rollout_ms"] = sim_rollout_ms(scene_name)
    out["speedup"] = round(out["sim_rollout_ms"] / out["rollout_ms"], 1)
    out["threads"] = torch.get_num_threads()
    return out
