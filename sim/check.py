"""``check_scene``: the conformance test every registered scene must pass.

Checks, naming the scene and what failed: the schema (vector stream, float64, one SI unit per
sensor, finite actuator bounds), stepping with the scene's own controller, observation shapes
and finiteness, true values inside the declared ranges, bad actions rejected with
:class:`~sim.scene.ActionError`, seeded determinism (reset twice, bitwise-equal rollouts),
fork/restore (two branches from one snapshot are bitwise equal) and the camera's shape/dtype.
"""

from __future__ import annotations

import math

import numpy as np

from sim.scene import ActionError, Scene


class SceneCheckError(AssertionError):
    """A scene broke the :class:`sim.scene.Scene` contract."""


def _fail(scene: Scene, what: str) -> None:
    raise SceneCheckError(f"{scene.kind} ({scene.asset}): {what}")


def _rollout(scene: Scene, steps: int) -> np.ndarray:
    rows = []
    for _ in range(steps):
        scene.step(scene.control())
        rows.append(np.concatenate([scene.observe(), scene.true_state()]))
    return np.array(rows)


def check_schema(scene: Scene) -> None:
    schema = scene.schema()
    if schema.kind != "vector" or schema.stream != "state" or schema.dtype != "<f8":
        _fail(scene, f"state schema must be a float64 vector stream 'state', got {schema}")
    if schema.asset != scene.asset:
        _fail(scene, f"schema asset {schema.asset!r} differs from the scene's {scene.asset!r}")
    if not schema.sensors or not schema.actuators:
        _fail(scene, "a scene needs at least one sensor and one actuator")
    for spec in schema.actuators:
        if not (math.isfinite(spec.low) and math.isfinite(spec.high) and spec.low < spec.high):
            _fail(
                scene, f"actuator {spec.name!r} needs finite bounds low < high, got [{spec.low}, {spec.high}]"
            )
    for spec in (*schema.sensors, *schema.actuators):
        if not spec.unit.strip():
            _fail(scene, f"{spec.name!r} has no unit")


def check_scene(scene: Scene, steps: int = 120, seed: int = 3, camera: bool = True) -> None:
    """Raise :class:`SceneCheckError` unless ``scene`` honours the Scene contract."""
    check_schema(scene)
    schema = scene.schema()
    n_sensors, n_actuators = len(schema.sensors), len(schema.actuators)

    scene.reset(seed)
    if scene.time_s != 0.0:
        _fail(scene, f"reset must bring time to 0, got {scene.time_s}")
    first = _rollout(scene, steps)
    if first.shape != (steps, 2 * n_sensors):
        _fail(scene, f"observe()/true_state() must be ({n_sensors},), rollout gave {first.shape}")
    truth = first[:, n_sensors:]
    if not np.isfinite(truth).all():
        _fail(scene, "true_state() returned NaN or inf")
    expected_t = steps / schema.rate_hz
    if abs(scene.time_s - expected_t) > 1e-9:
        _fail(scene, f"{steps} steps should take {expected_t} s, time_s says {scene.time_s}")
    low = np.array([s.low for s in schema.sensors])
    high = np.array([s.high for s in schema.sensors])
    outside = (truth < low) | (truth > high)
    if outside.any():
        bad = [schema.sensors[i].name for i in np.flatnonzero(outside.any(axis=0))]
        _fail(scene, f"true values of {bad} left their declared ranges")

    for bad_action, why in (
        (np.zeros(n_actuators + 1), "wrong shape"),
        (np.array([spec.high + 1.0 + abs(spec.high) for spec in schema.actuators]), "above bounds"),
        (np.full(n_actuators, np.nan), "NaN"),
    ):
        try:
            scene.step(bad_action)
        except ActionError:
            continue
        _fail(scene, f"an action with {why} was accepted")

    scene.reset(seed)
    again = _rollout(scene, steps)
    if not np.array_equal(first, again, equal_nan=True):
        _fail(scene, f"two rollouts with seed {seed} differ (max diff {np.nanmax(np.abs(first - again))})")

    snapshot = scene.save_state()
    branch_a = _rollout(scene, steps // 2)
    scene.restore_state(snapshot)
    branch_b = _rollout(scene, steps // 2)
    if not np.array_equal(branch_a, branch_b, equal_nan=True):
        _fail(scene, "two forks from one snapshot with the same inputs differ")

    if camera:
        rgb, depth = scene.camera()
        shapes = {s.stream: s for s in scene.camera_schemas()}
        cam = shapes["camera"]
        if rgb.dtype != np.uint8 or rgb.shape != cam.shape:
            _fail(scene, f"camera gave {rgb.dtype}{rgb.shape}, schema says uint8{cam.shape}")
        if "depth" in shapes and (
            depth is None or depth.dtype != np.float32 or depth.shape != shapes["depth"].shape
        ):
            _fail(scene, "depth enabled but camera() returned no float32 depth of the schema's shape")
