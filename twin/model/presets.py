"""Per-scene model and objective defaults: the one home that `twin train` and `bench/model.py` read.

The global defaults of :class:`~twin.model.jepa.ModelConfig` and
:class:`~twin.model.losses.ObjectiveConfig` are the ones measured best on the cartpole and the
rotor. A scene whose dynamics want something else says so here, with the measurement that
chose it (``docs/model.md``), so the command line and the benchmark train the same model.
"""

from __future__ import annotations

from typing import Any

from twin.model.jepa import ModelConfig
from twin.model.losses import ObjectiveConfig
from twin.model.pipeline import EVAL_HORIZON, SELECT_HORIZONS
from twin.model.train import TrainConfig

__all__ = [
    "CAMERA_KEEP_LATER_WITHIN",
    "CAMERA_ROLLOUT_STEPS",
    "CAMERA_SELECT_HORIZONS",
    "CAMERA_SELECT_WEIGHT",
    "CAMERA_TRAIN",
    "SCENE_CAMERA_MODEL",
    "SCENE_CAMERA_SELECT_ON",
    "SCENE_MODEL",
    "SCENE_OBJECTIVE",
    "scene_model",
    "scene_objective",
    "scene_select_on",
    "scene_selection",
    "scene_train",
]

SCENE_MODEL: dict[str, dict[str, Any]] = {
    "arm": {"linear_path": True, "input_clip": 4.0},
    "rotor": {"phase_from": ("speed",), "linear_path": True},
}
"""Sensor-vector runs of a scene: :class:`ModelConfig` fields that differ from its defaults.
The arm: a linear predictor path (NRMSE h1/h10/h50 0.438/0.767/0.883 -> 0.378/0.718/0.856 in
the same run; on the cartpole it cost 5% at h50, so it is not global) and inputs clamped at
4 std where an MLP reads them: a cube on the floor is 6-8 std below the table, 7% of test
windows hold one and they carried half the h10 error (h10 0.615 -> 0.589, shuffled-action
ratio 1.79 -> 2.19 on the same data and seed; docs/model.md, "Cubes on the floor"). The
rotor: a phase pair turned by the shaft's speed (``phase_from``) and the linear path, with
:data:`SCENE_OBJECTIVE`'s log term: the speed forecast as precise as the linear ARX's, so the
pair carries the aliased vibration's phase to 50 steps (seed 0, 200 episodes, 3,000 steps,
NRMSE h1/h10/h50: default 0.0114/0.0798/0.2060, the pair with plain MSE
0.0080/0.0706/0.2377, with the log term 0.0032/0.0642/0.0935, the linear ARX
0.197/0.208/0.248; docs/model.md, "The rotor's phase, carried")."""

SCENE_CAMERA_MODEL: dict[str, dict[str, Any]] = {
    "arm": {
        "camera_reader": "keypoints",
        "camera_keypoints": 16,
        "camera_dims": 16,
        "keypoint_pooling": "presence",
        "camera_readout": "linear",
        "history": 4,
        "camera_frames": 4,
    }
}
"""Runs of a scene whose camera shows what its sensors do not (``camera_only``):
:class:`ModelConfig` fields that differ from its defaults. The arm: its camera shows the cubes,
read by keypoints only (pooled over the frames by presence), into a part of the latent of
their own, read out linearly (docs/model.md, "The arm's camera"). 16 keypoint maps for its
three cubes, not 8: a keypoint moves toward a cube only where its map already puts some weight
on it, and with 8 one seed's reader never found the white cube on the beige table and learned
it from the training episodes instead (train R^2 0.86, validation -0.43); with 16 every cube
was found on every seed measured (probe R^2 at 10 steps, seeds 0 / 1 / 2: 0.925 / 0.914 /
0.515 with 8, 0.896 / 0.897 / 0.880 with 16; docs/model.md, "Spare keypoints"). Windows of 4
steps whose 4 frames the keypoints are pooled over, not 2: a cube the arm hides for a frame or
two is read from an earlier frame (docs/model.md, "Four frames for the arm's camera":
probe R^2 at 10 steps on seeds 0 / 2 / 3, two frames against four in the same
session: 0.951 -> 0.959, 0.931 -> 0.946, 0.895 -> 0.903)."""

SCENE_OBJECTIVE: dict[str, dict[str, Any]] = {
    "arm": {"sensor_loss": "huber"},
    "rotor": {"sensor_loss": "mse+log_mse", "rollout_steps": EVAL_HORIZON},
}
"""Sensor-vector runs of a scene: :class:`ObjectiveConfig` fields that differ from its
defaults. The arm: a Huber feature loss (with the linear path, 0.378/0.718/0.856 ->
0.260/0.667/0.823: the cubes' rare large moves no longer drown the joints). The rotor (with
its phase pair): MSE plus 0.1 x the mean of the features' log-MSE, so the smooth sensors'
relative precision counts beside the vibration's large error (speed at 50 steps 0.0123 ->
0.0031 NRMSE, vibration 1.087 -> 0.447; the log term alone 0.0031 and 0.610), unrolled over
``EVAL_HORIZON`` (50) steps rather than 32, the longest horizon it is scored at: the phase it
carries is trained as far as it is read (seed 4: h50 0.1284 -> 0.0973, 0.535x -> 0.405x the
linear ARX; docs/model.md, "The rotor unrolled 50 steps")."""

SCENE_CAMERA_SELECT_ON: dict[str, tuple[str, ...]] = {
    "arm": tuple(f"cube{k}_{axis}" for k in range(3) for axis in "xy")
}
"""``RunConfig.select_on`` of a scene's runs with ``camera_only`` columns: the sensors whose
validation error chooses the best weights. The arm: the cubes' positions on the table, which
the camera is there to read (one 3,000-step run scored every 250 steps: the score of all 49
sensors was lowest at step 750, where the cubes' test R^2 at h10 read 0.83 before the blend;
the cubes' x and y kept improving to 0.35 from 0.42 at step 2,250, R^2 0.88; their z and
quaternions, resting cubes plus rare falls, got worse; docs/model.md, "The arm's camera")."""

CAMERA_KEEP_LATER_WITHIN = 0.01
"""``TrainConfig.keep_later_within`` of runs with ``camera_only`` columns: validation weighs
those few features little while the camera part still learns, so a near-tie (within 1%) goes
to the later, more-trained weights (docs/model.md, "The arm's camera")."""

CAMERA_SELECT_HORIZONS = (10,)
"""``RunConfig.select_horizons`` of runs with ``camera_only`` columns: their selected sensors'
validation error at 10 steps alone chooses the weights. At 10 and 50 (the default), the arm's
camera preset on seed 0 kept step 500's weights (probe R^2 0.896) because the cubes' 50-step
error, pushes and the feeder that no reading foresees, rose after it; scored every 250 steps to
2,000 the probe read 0.926-0.932 from step 750 on, where the 10-step error was lowest
(docs/model.md, "Selecting at 10 steps, and a tray for the cubes")."""

CAMERA_ROLLOUT_STEPS = 8
"""Unrolled steps of the objective with camera frames (each step encodes a frame pair: 32 do
not fit the 2-core budget)."""

CAMERA_SELECT_WEIGHT = 2.0
"""``ObjectiveConfig.select_weight`` of camera runs: the features of the sensors they select on
(the arm's cubes' x and y, 6 of 70) weigh twice the others in the feature losses, so the
camera's reader learns what the run is for (no effect without ``select_on``). Measured on the
arm's camera preset, seeds 0 and 1 (docs/model.md, "The arm's camera"): the reading of the
present R^2 0.936 -> 0.950 and 0.940 -> 0.949, the probe at 10 steps 0.913 -> 0.925 and
0.895 -> 0.914; a weight of 4 read better still on seed 1 (0.952) but made seed 0's
validation so noisy that step 500's weights were kept (probe 0.59)."""


CAMERA_TRAIN: dict[str, Any] = {"batch": 32}
"""``TrainConfig`` fields of runs that encode camera frames: minibatches of 32 windows, not
128 (a training window of the arm's camera encodes 12 distinct frames). Steps stay the default 3,000: with 300
episodes of the arm's camera, 2,000 steps ended with validation still falling on four seeds
of five (docs/model.md, "Coarse meshes: twice the camera data")."""


def scene_train(camera: bool = False, camera_only: tuple[str, ...] = (), **fields: Any) -> TrainConfig:
    """The :class:`TrainConfig` of a run, the one home of what `twin train` and
    `bench/model.py` train with: the defaults (3,000 steps, a 480 s guard), learning rate
    annealed by time when the guard would stop the run (``anneal_by_time``: it takes over only
    then, so a run with time to spare stays repeatable), with ``camera`` :data:`CAMERA_TRAIN`,
    with ``camera_only`` columns :data:`CAMERA_KEEP_LATER_WITHIN`, then ``fields``."""
    base: dict[str, Any] = {"anneal_by_time": True}
    if camera:
        base.update(CAMERA_TRAIN)
    if camera_only:
        base["keep_later_within"] = CAMERA_KEEP_LATER_WITHIN
    return TrainConfig(**{**base, **fields})


def scene_model(scene: str, **fields: Any) -> ModelConfig:
    """The :class:`ModelConfig` for ``scene``: its defaults, the scene's overrides, then
    ``fields``. Overrides: for sensor vectors, :data:`SCENE_MODEL`; for a camera that shows
    what the sensors do not (``camera=True`` and ``camera_only`` columns in ``fields``, e.g.
    the arm's cubes), :data:`SCENE_CAMERA_MODEL`; any other camera run (beside all the
    sensors, or camera-only, whose camera must show everything) keeps the global defaults."""
    camera = bool(fields.get("camera", False))
    if not camera:
        overrides = SCENE_MODEL.get(scene, {})
    else:
        overrides = SCENE_CAMERA_MODEL.get(scene, {}) if fields.get("camera_only") else {}
    return ModelConfig(**{**overrides, **fields})


def scene_objective(scene: str, camera: bool = False, **fields: Any) -> ObjectiveConfig:
    """The :class:`ObjectiveConfig` for ``scene`` (``camera``: a camera run, fewer unrolled
    steps, its selected sensors weighed more and no scene overrides), then ``fields``."""
    base = (
        {"rollout_steps": CAMERA_ROLLOUT_STEPS, "select_weight": CAMERA_SELECT_WEIGHT}
        if camera
        else SCENE_OBJECTIVE.get(scene, {})
    )
    return ObjectiveConfig(**{**base, **fields})


def scene_select_on(scene: str, camera_only: tuple[str, ...]) -> tuple[str, ...]:
    """``RunConfig.select_on`` for a run of ``scene`` whose ``camera_only`` prefixes (e.g.
    ``("cube",)``) hide sensors from all but the camera: the names of
    :data:`SCENE_CAMERA_SELECT_ON` among those sensors; with none, every sensor (empty)."""
    if not camera_only:
        return ()
    return tuple(n for n in SCENE_CAMERA_SELECT_ON.get(scene, ()) if n.startswith(tuple(camera_only)))


def scene_selection(scene: str, camera_only: tuple[str, ...]) -> dict[str, tuple[Any, ...]]:
    """``RunConfig`` fields that choose the JEPA's weights for a run of ``scene`` whose
    ``camera_only`` prefixes hide sensors from all but the camera: ``select_on``
    (:func:`scene_select_on`) and ``select_horizons`` (:data:`CAMERA_SELECT_HORIZONS` where
    there is a selection, else ``pipeline.SELECT_HORIZONS``)."""
    select_on = scene_select_on(scene, camera_only)
    horizons = CAMERA_SELECT_HORIZONS if select_on else SELECT_HORIZONS
    return {"select_on": select_on, "select_horizons": horizons}
