"""Inference timings: one encode+predict step, batched imagined rollouts, and the same rollouts
in PyBullet with saveState/restoreState (what the world model replaces for planning)."""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import torch

from twin.model.api import TwinModel


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
    ``rollout_read_ms`` (the same plus reading every predicted latent into sensor units)."""
    rng = np.random.default_rng(seed)
    f = model.features
    n_s, n_a = f.n_sensors, len(f.action_low)
    window = torch.from_numpy(f.features(f.mean + rng.standard_normal((1, model.history, n_s)) * f.std))
    frames = None
    if model.model.config.camera:
        frames = torch.randint(0, 255, (1, model.model.camera_frames, 3, 64, 64), dtype=torch.uint8)
    action = torch.zeros(1, n_a)
    net = model.model.eval()

    def one_step() -> None:
        net.next(net.encode(window, frames), action)

    plans = torch.from_numpy(rng.uniform(-1, 1, (candidates, steps, n_a)).astype(np.float32))
    z0 = net.encode(window, frames)

    def rollout() -> None:
        net.rollout(z0.expand(candidates, -1), plans)

    def rollout_read() -> None:
        start = z0.expand(candidates, -1)
        net.read_forecast(start, net.rollout(start, plans))

    return {
        "step_ms": round(_median_ms(one_step, 200), 4),
        "rollout_ms": round(_median_ms(rollout, 15), 2),
        "rollout_read_ms": round(_median_ms(rollout_read, 15), 2),
    }


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
