"""Generate training episodes by driving a simulator scene through its public Scene API.

Each episode: ``scene.reset(seed)``, then ``steps`` control steps at ``control_hz``; an action is
held for ``rate_hz / control_hz`` physics ticks (zero-order hold, as a controller on the bus
would). Actions mix the scene's own controller (scripted, or random excitation with centring;
alternating by episode) with a per-episode amount of piecewise-constant uniform pushes, so the
data covers the state space *and* the effect of actions (without the pushes the actions are a
function of the state and a model could ignore them).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from twin.model.data import CONTROL_HZ, Dataset, Episode
from twin.model.pool import cores, side_by_side

log = logging.getLogger(__name__)

SCENE_STEPS = {"cartpole": 300, "rotor": 600, "arm": 200}
"""Default control steps per episode (10 s, 20 s, ~7 s at 30 Hz)."""

SCENE_PUSH_MAX = {"arm": 0.3}
"""Largest per-episode push (fraction of each actuator's half range) where 1.0 is too much: the
arm's position set-points jumping across the whole joint range drive every motor to its effort
limit (bang-bang torques) and throw the cubes off the table."""

SCENE_ACTION_RATE = {"arm": 0.1}
"""Largest change of an action per control step (fraction of half range; 0: unlimited). The arm's
joint set-points move like an interpolated trajectory instead of jumping."""

SCENE_CAMERA_OPTIONS: dict[str, dict[str, Any]] = {"arm": {"cubes": "tray", "meshes": "coarse"}}
"""Scene options (``SceneConfig.options``) of camera runs: the arm places its cubes anywhere in
a walled tray on the table, so a camera reader learns where a cube is from many configurations
rather than telling a few dozen episodes apart, and a pushed cube stays in view by physics, not
by a feeder's jump no reading foresees (docs/model.md, "The arm's camera", "Selecting at 10
steps, and a tray for the cubes"); it draws the robot with coarse visual meshes, which render a
frame in half the time with the same physics ("Coarse meshes: twice the camera data")."""

SCENE_EPISODES = {"cartpole": 300, "rotor": 200, "arm": 600}
"""Default episodes to generate for training (90-120k transitions, under a minute of
simulation in two processes). The arm's 600 (120k transitions, ~50 s): with 120 its test
configurations lay a median 0.8 rad from the nearest training one in joint space, and five
times the data took the JEPA from 0.92x to 0.86x the linear ARX at h10 and the shuffled-action
ratio from 2.2 to 2.9 (docs/model.md, "The arm with five times the data"). The rotor's 200
(120k transitions, ~10 s): with 100 its bands were calibrated on 10 episodes and covered
0.816-0.956 across seeds and model variants; with 200 they covered 0.893-0.921 on seeds 0 and
1, and the JEPA's h50 went from 0.90x / 0.85x the linear ARX to 0.83x / 0.84x (docs/model.md,
"The rotor with twice the episodes")."""

SCENE_CAMERA_EPISODES = {"arm": 300}
"""Default episodes of camera runs, where rendering dominates the time. The arm's 300 with
frames and coarse meshes: ~60 s in two processes (200: 41 s; the 120 it had with full meshes
took 80-105 s); 30 of them calibrate its bands (docs/model.md, "Coarse meshes: twice the camera
data"). Other scenes: a third of :data:`SCENE_EPISODES`."""


def default_episodes(scene: str, camera: bool = False) -> int:
    """Episodes ``twin train`` and ``bench/model.py`` generate for ``scene`` by default:
    :data:`SCENE_EPISODES` (200 for a scene without an entry), with a camera
    :data:`SCENE_CAMERA_EPISODES` or a third of that."""
    episodes = SCENE_EPISODES.get(scene, 200)
    return SCENE_CAMERA_EPISODES.get(scene, episodes // 3) if camera else episodes


@dataclass(frozen=True, slots=True)
class GenerateConfig:
    """What to simulate: ``episodes`` x ``steps`` control steps of ``scene`` at ``control_hz``."""

    scene: str
    episodes: int
    steps: int = 0
    seed: int = 0
    control_hz: float = CONTROL_HZ
    camera: bool = False
    push_max: float | None = None
    """Largest per-episode push amplitude, as a fraction of each actuator's half range
    (None: :data:`SCENE_PUSH_MAX`, else 1.0)."""
    action_rate: float | None = None
    """Largest action change per control step, fraction of half range (None: scene default
    from :data:`SCENE_ACTION_RATE`, else 0 = unlimited)."""
    options: dict[str, Any] | None = None
    """Scene options (``SceneConfig.options``; None: :data:`SCENE_CAMERA_OPTIONS` for a camera
    run, else none)."""

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"GenerateConfig.episodes={self.episodes!r} must be >= 1")
        if self.steps < 0:
            raise ValueError(f"GenerateConfig.steps={self.steps!r} must be >= 0 (0: scene default)")
        if not self.control_hz > 0:
            raise ValueError(f"GenerateConfig.control_hz={self.control_hz!r} must be > 0 Hz")
        if self.push_max is not None and not 0 <= self.push_max <= 2:
            raise ValueError(f"GenerateConfig.push_max={self.push_max!r} must be in [0, 2]")
        if self.action_rate is not None and not 0 <= self.action_rate <= 2:
            raise ValueError(f"GenerateConfig.action_rate={self.action_rate!r} must be in [0, 2]")

    @property
    def episode_steps(self) -> int:
        return self.steps or SCENE_STEPS.get(self.scene, 300)

    @property
    def push(self) -> float:
        return SCENE_PUSH_MAX.get(self.scene, 1.0) if self.push_max is None else self.push_max

    @property
    def rate(self) -> float:
        return SCENE_ACTION_RATE.get(self.scene, 0.0) if self.action_rate is None else self.action_rate

    @property
    def scene_options(self) -> dict[str, Any]:
        if self.options is not None:
            return dict(self.options)
        return dict(SCENE_CAMERA_OPTIONS.get(self.scene, {})) if self.camera else {}

    def lineage(self) -> dict[str, Any]:
        """What regenerates exactly this data (``twin.model.jobs.data_from_lineage``)."""
        return {
            "source": "generated",
            "scene": self.scene,
            "episodes": self.episodes,
            "steps": self.episode_steps,
            "seed": self.seed,
            "control_hz": self.control_hz,
            "camera": self.camera,
            "push_max": self.push,
            "action_rate": self.rate,
            "options": self.scene_options,
        }


def _pushes(
    rng: np.random.Generator, steps: int, low: np.ndarray, high: np.ndarray, amp: float
) -> np.ndarray:
    """Piecewise-constant uniform pushes (steps, A): a new level every 1-15 control steps."""
    pushes = np.empty((steps, len(low)))
    t = 0
    while t < steps:
        hold = int(rng.integers(1, 16))
        pushes[t : t + hold] = rng.uniform(-1.0, 1.0, len(low)) * amp * (high - low) / 2
        t += hold
    return pushes


def extra_truth(scene: Any) -> np.ndarray | None:
    """Ground truth beyond the sensors, if the scene offers it (``object_poses()``)."""
    poses = getattr(scene, "object_poses", None)
    return None if poses is None else np.asarray(poses(), dtype=np.float64).ravel()


def generate(config: GenerateConfig, workers: int | None = None) -> Dataset:
    """Simulate ``config.episodes`` episodes (deterministic for a given config).

    ``workers``: 1, or 2 processes side by side, one per controller (None: 2 where there are
    two CPU cores and at least :data:`PARALLEL_MIN_EPISODES` episodes; 1.7x faster for the arm's
    camera episodes on 2 cores). Every episode's random draws are made here first, in the order a
    single process makes them, so the data are the same either way (tested)."""
    from sim.registry import make_scene
    from sim.scene import SceneConfig

    started = time.perf_counter()
    probe = make_scene(config.scene, SceneConfig(seed=config.seed, options=config.scene_options))
    try:
        schema = probe.schema()
    finally:
        probe.close()
    low = np.array([a.low for a in schema.actuators])
    high = np.array([a.high for a in schema.actuators])
    rng = np.random.default_rng([config.seed, 11])
    plans = []
    for index in range(config.episodes):
        amp = float(rng.uniform(0.0, config.push))
        plans.append(
            (index, config.seed * 100_003 + index, _pushes(rng, config.episode_steps, low, high, amp))
        )
    if workers is None:
        workers = 2 if config.episodes >= PARALLEL_MIN_EPISODES and cores() > 1 else 1
    if workers not in (1, 2):
        raise ValueError(f"generate(workers={workers!r}) must be 1 or 2 (one process per controller)")
    ticks = max(1, round(schema.rate_hz / config.control_hz))
    bounds = (low, high)
    jobs = [(config, c, ticks, bounds, plans[k::2]) for k, c in enumerate(EPISODE_CONTROLLERS) if plans[k::2]]
    if workers == 1:
        done = [item for job in jobs for item in _simulate(*job)]
    else:  # each child sends its half back in one pickle (the arm's 300 camera episodes: ~350 MB)
        halves = side_by_side({f"simulating {job[1]}": (_simulate, job) for job in jobs}, 2)
        done = [item for part in halves.values() for item in part]
    episodes = tuple(episode for _, episode in sorted(done, key=lambda item: item[0]))
    elapsed = time.perf_counter() - started
    log.info(
        "generated %d %s episodes in %.1f s (%d processes)", config.episodes, config.scene, elapsed, workers
    )
    lineage = {**config.lineage(), "ticks_per_step": ticks, "generate_s": round(elapsed, 2)}
    return Dataset(schema, episodes, config.control_hz, lineage)


PARALLEL_MIN_EPISODES = 16
"""Fewer episodes than this are simulated in the calling process (a second process is not worth
starting for a few short episodes)."""


EPISODE_CONTROLLERS = ("default", "random")
"""The scene controllers generated episodes alternate between (of ``sim.scene.CONTROLLERS``):
even indices the scripted one, odd ones random excitation with centring."""


def _simulate(
    config: GenerateConfig,
    controller: str,
    ticks: int,
    bounds: tuple[np.ndarray, np.ndarray],
    plans: list[tuple[int, int, np.ndarray]],
) -> list[tuple[int, Episode]]:
    """Episodes ``(index, reset seed, pushes (steps, A))``, in order, on one scene of
    ``controller``. One scene per controller, as a single process has always run them: an
    episode starts from ``scene.reset(seed)``, but the arm's episodes still depend on the ones
    run before them on the same scene (PyBullet keeps some state across a reset: noticed, left
    alone, since fixing it would change every generated lineage), so the episodes of a
    controller stay on one scene, in order."""
    from sim.registry import make_scene
    from sim.scene import SceneConfig

    scene = make_scene(
        config.scene, SceneConfig(seed=config.seed, controller=controller, options=config.scene_options)
    )
    try:
        return [
            (index, _episode(scene, config, ticks, bounds, pushes, seed)) for index, seed, pushes in plans
        ]
    finally:
        scene.close()


def _episode(
    scene: Any,
    config: GenerateConfig,
    ticks: int,
    bounds: tuple[np.ndarray, np.ndarray],
    pushes: np.ndarray,
    seed: int,
) -> Episode:
    """One episode from ``scene.reset(seed)``: ``pushes`` (steps, A) added to the scene's own
    control, clipped to ``bounds`` (low, high) and rate-limited, each action held ``ticks``
    physics ticks."""
    low, high = bounds
    scene.reset(seed)
    steps = config.episode_steps
    limit = config.rate * (high - low) / 2 if config.rate > 0 else None
    obs = [scene.observe()]
    frames = [scene.camera()[0]] if config.camera else None
    first = extra_truth(scene)
    extra = [first] if first is not None else None
    actions = np.empty((steps, len(low)))
    for t in range(steps):
        action = np.clip(scene.control() + pushes[t], low, high)
        if limit is not None and t > 0:
            action = actions[t - 1] + np.clip(action - actions[t - 1], -limit, limit)
        actions[t] = action
        for _ in range(ticks):
            scene.step(action)
        obs.append(scene.observe())
        if frames is not None:
            frames.append(scene.camera()[0])
        if extra is not None:
            extra.append(extra_truth(scene))
    return Episode(
        np.asarray(obs),
        actions,
        None if frames is None else np.asarray(frames, dtype=np.uint8),
        None if extra is None else np.asarray(extra),
    )
