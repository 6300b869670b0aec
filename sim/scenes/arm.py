"""Arm: a KUKA iiwa (pybullet_data ``kuka_iiwa/model.urdf``) on a table, pushing three cubes.

Frame: the asset's origin is the robot base on the table top (z = 0); the floor is 0.625 m below.
Sensors (``state`` stream, 49 values): for each of the 7 joints ``<joint>_position`` rad,
``<joint>_velocity`` rad/s, ``<joint>_torque`` N*m (motor torque PyBullet applied); the
end-effector pose ``ee_x/ee_y/ee_z`` m and ``ee_qx..ee_qw`` (unit quaternion, xyzw);
for each cube ``cube<k>_x/_y/_z`` m and ``cube<k>_qx..qw``. Actuators: ``<joint>_target`` rad,
position set-points within the URDF limits, tracked by PyBullet's position motors with at most
the URDF effort (persistent, so no per-substep work). Loaded with URDF_USE_INERTIA_FROM_FILE.

Default controller: reach-and-push. Every 1.5 s the next phase of a cycle (above the cube,
behind it, push through it, lift) picks an end-effector waypoint, turned into joint targets by
PyBullet's inverse kinematics; excitation adds small joint-space noise (10% of the usual scale)
so data covers more than one trajectory. A cube that leaves the table is put back on it.

Cube placement, ``options={"cubes": ...}``: ``"home"`` (default) starts each cube at its home
spot (:data:`CUBE_HOME`) with +-3 cm of jitter; ``"table"`` places the three anywhere in
:data:`CUBE_AREA` (at least :data:`CUBE_SPACING_M` apart), so that camera data shows the cubes
in many configurations, not a few (docs/model.md, "The arm's camera"); ``"tray"`` places them
as ``"table"`` does, inside a walled tray on the table (:data:`TRAY_HALF_M`) that keeps a pushed
cube in the camera's field by physics rather than by the feeder.

Robot meshes, ``options={"meshes": ...}``: ``"full"`` (default) draws the KUKA with
pybullet_data's meshes; ``"coarse"`` with visual meshes decimated to :data:`COARSE_KEEP` of
their triangles (:func:`sim.meshes.coarse_urdf`): a 64x64 frame renders in ~1.2 ms instead of
~2.9 ms, and physics is the same (collision meshes and inertia are the original's). The floor
lies under the table, out of the camera's sight, and is invisible outside the GUI (TinyRenderer
then skips it: 0.6 ms a frame, not a pixel changed).

Camera: straight down onto the table from 0.75 m above the cubes' area (image up = +x, away
from the robot, whose base sits just below the frame): at 64x64 the visible patch is about
0.85 m square, a 5 cm cube covers ~4 pixels across, so object positions can be read off a frame.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from typing import Any

import numpy as np
import pybullet
import pybullet_data

from bridge import ActuatorSpec, SensorSpec
from sim.camera import View
from sim.meshes import coarse_urdf
from sim.scene import canonical_quaternion
from sim.scenes.base import BaseScene

TABLE_TOP_M = 0.625
CUBE_HOME = ((0.55, -0.15), (0.6, 0.1), (0.45, 0.25))
CUBE_COLOURS = ((0.15, 0.7, 0.15, 1.0), (0.8, 0.1, 0.8, 1.0), (1.0, 1.0, 1.0, 1.0))
"""Green, magenta, white: which cube is which shows in one frame. Three identical cubes could
only be told apart by where they were, which a camera reading of one moment does not know once
the arm has pushed them about (docs/model.md, "The arm's camera")."""
CUBE_PLACEMENTS = ("home", "table", "tray")
MESH_DETAILS = ("full", "coarse")
COARSE_KEEP = 0.1
"""Fraction of the KUKA's visual triangles ``meshes="coarse"`` keeps (14,750 -> ~1,470)."""
CUBE_AREA = ((0.35, 0.7), (-0.28, 0.38))
"""Asset-frame x and y ranges, metres, of ``cubes="table"`` placement: reachable by the arm's
push and inside the camera's field with room for a push (the field is 0.87 m square around
:data:`CAMERA_CENTRE`)."""
CUBE_FIELD_M = 0.4
"""With ``cubes="table"``, a cube further than this from :data:`CAMERA_CENTRE` in x or y
(leaving the camera's field) or below the table top is put back on a free spot of
:data:`CUBE_AREA` at the next control step, like a feeder replacing a part knocked out of the
cell: the workcell stays in view, as a real one's camera is placed to see it. (``"home"``:
a cube off the table goes back home at the next phase of the script, as it always did.)"""
CUBE_SPACING_M = 0.1
TRAY_HALF_M = 0.37
"""With ``cubes="tray"``: the tray's inside spans this far in x and y from
:data:`CAMERA_CENTRE` (inside the camera's 0.4 m half-field, around :data:`CUBE_AREA`), walled
by four static boards (:data:`TRAY_WALL_M`). Why: with ``"table"``, a cube pushed out of the
field is put back on a random free spot, a jump no reading can foresee; in one seed's test
windows such jumps were 3% of the windows and 72% of the error of the cubes' true positions
held ten steps (docs/model.md, "Selecting at 10 steps, and a tray for the cubes")."""
TRAY_WALL_M = (0.01, 0.12)
"""(thickness, height) of the tray's walls, metres. 12 cm, not a rim: the scripted push lifts a
cube 5-13 cm and can fling it at ~5 m/s. In 24 episodes, 3 cm walls left 8 one-step moves of
more than 15 cm (cubes carried over the wall, then put back; 11 on the open table), 12 cm
walls 2, both one flung cube hitting a wall. The arm touches the walls at times."""
TRAY_COLOUR = (0.35, 0.35, 0.4, 1.0)
EE_LINK = 6
PHASE_S = 1.5
QUAT = ("qx", "qy", "qz", "qw")
CAMERA_CENTRE = (0.55, 0.05)
"""Asset-frame (x, y) of the camera's view centre, metres: the middle of the cubes' area."""
CAMERA_HEIGHT_M = 0.75


def _free_spot(rng: np.random.Generator, taken: list[tuple[float, float]]) -> tuple[float, float]:
    """A uniform (x, y) in :data:`CUBE_AREA` at least :data:`CUBE_SPACING_M` from every spot in
    ``taken`` (rejection sampling: ~1.2 draws with two taken)."""
    (x0, x1), (y0, y1) = CUBE_AREA
    for _ in range(1000):
        x, y = float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1))
        if all(math.hypot(x - a, y - b) >= CUBE_SPACING_M for a, b in taken):
            return x, y
    raise RuntimeError(f"arm scene: no free spot {CUBE_SPACING_M} m from {len(taken)} cubes in {CUBE_AREA}")


def _quaternion_specs(prefix: str) -> list[SensorSpec]:
    """``<prefix>_qx..qw``: a unit quaternion with the canonical sign (qw in [0, 1])."""
    return [SensorSpec(f"{prefix}_{q}", "1", 0.0 if q == "qw" else -1.0, 1.0) for q in QUAT]


class ArmScene(BaseScene):
    kind = "arm"
    description = "KUKA iiwa on a table pushing three cubes"
    excitation_gain = 0.1

    def _at(self, x: float, y: float, z: float) -> list[float]:
        """World coordinates of a point given in the asset frame."""
        return [float(self.origin[0] + x), float(self.origin[1] + y), float(self.origin[2] + z)]

    def _build(self) -> None:
        self.placement = str(self.config.options.get("cubes", "home"))
        if self.placement not in CUBE_PLACEMENTS:
            raise ValueError(
                f"arm scene: options['cubes']={self.placement!r} must be one of {CUBE_PLACEMENTS}"
            )
        self.meshes = str(self.config.options.get("meshes", "full"))
        if self.meshes not in MESH_DETAILS:
            raise ValueError(f"arm scene: options['meshes']={self.meshes!r} must be one of {MESH_DETAILS}")
        data = pybullet_data.getDataPath()
        c, o = self.client, self.origin
        self.floor = c.loadURDF(os.path.join(data, "plane.urdf"), basePosition=self._at(0, 0, -TABLE_TOP_M))
        if not self.config.gui:  # under the table, unseen by the camera: TinyRenderer skips it
            c.changeVisualShape(self.floor, -1, rgbaColor=(1.0, 1.0, 1.0, 0.0))
        self.table = c.loadURDF(
            os.path.join(data, "table/table.urdf"),
            basePosition=self._at(0.5, 0, -TABLE_TOP_M),
            useFixedBase=True,
        )
        if self.placement == "tray":
            self._build_tray()
        with contextlib.ExitStack() as stack:
            robot = os.path.join(data, "kuka_iiwa/model.urdf")
            if self.meshes == "coarse":  # a copy for the load only: PyBullet reads meshes now
                scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="jumeau-arm-"))
                robot = coarse_urdf(robot, COARSE_KEEP, scratch)
            self.robot = c.loadURDF(
                robot, basePosition=o.tolist(), useFixedBase=True, flags=pybullet.URDF_USE_INERTIA_FROM_FILE
            )
        self._register_body(self.robot)
        self.cubes = []
        for k, (x, y) in enumerate(CUBE_HOME):
            cube = c.loadURDF(os.path.join(data, "cube_small.urdf"), basePosition=self._at(x, y, 0.025))
            c.changeVisualShape(cube, -1, rgbaColor=CUBE_COLOURS[k])
            self.cubes.append(cube)
            self.links[f"cube{k}"] = (cube, -1)
        self.joint_names = list(self.joints)
        self.indices = [self.joints[n][1] for n in self.joint_names]
        info = [c.getJointInfo(self.robot, j) for j in self.indices]
        self.lower = np.array([i[8] for i in info])
        self.upper = np.array([i[9] for i in info])
        self.effort = np.array([i[10] if i[10] > 0 else 300.0 for i in info])
        self.max_velocity = [i[11] if i[11] > 0 else 2.0 for i in info]
        for j in self.indices:
            c.enableJointForceTorqueSensor(self.robot, j, True)
        self._script = {"phase": 0, "next_s": 0.0, "cube": 0}

    def _build_tray(self) -> None:
        """Four static walls around :data:`CAMERA_CENTRE` on the table top (``cubes="tray"``)."""
        c = self.client
        thick, high = TRAY_WALL_M
        reach = TRAY_HALF_M + thick / 2  # wall centre line
        span = TRAY_HALF_M + thick  # half length, so the corners close
        cx, cy = CAMERA_CENTRE
        self.tray = []
        for dx, dy, half in (
            (reach, 0.0, (thick / 2, span, high / 2)),
            (-reach, 0.0, (thick / 2, span, high / 2)),
            (0.0, reach, (span, thick / 2, high / 2)),
            (0.0, -reach, (span, thick / 2, high / 2)),
        ):
            shape = c.createCollisionShape(pybullet.GEOM_BOX, halfExtents=half)
            look = c.createVisualShape(pybullet.GEOM_BOX, halfExtents=half, rgbaColor=TRAY_COLOUR)
            self.tray.append(
                c.createMultiBody(0.0, shape, look, basePosition=self._at(cx + dx, cy + dy, high / 2))
            )

    def _specs(self) -> tuple[list[SensorSpec], list[ActuatorSpec]]:
        sensors = []
        for n, lo, hi, effort in zip(self.joint_names, self.lower, self.upper, self.effort, strict=True):
            sensors += [
                SensorSpec(f"{n}_position", "rad", lo - 0.1, hi + 0.1),
                SensorSpec(f"{n}_velocity", "rad/s", -20.0, 20.0),
                SensorSpec(f"{n}_torque", "N*m", -2 * effort, 2 * effort),
            ]
        sensors += [SensorSpec(f"ee_{a}", "m", -2.0, 2.0) for a in "xyz"]
        sensors += _quaternion_specs("ee")
        for k in range(len(self.cubes)):
            sensors += [SensorSpec(f"cube{k}_{a}", "m", -3.0, 3.0) for a in "xyz"]
            sensors += _quaternion_specs(f"cube{k}")
        actuators = [
            ActuatorSpec(f"{n}_target", "rad", lo, hi, "joint position set-point")
            for n, lo, hi in zip(self.joint_names, self.lower, self.upper, strict=True)
        ]
        return sensors, actuators

    def _reset_bodies(self, rng: np.random.Generator) -> None:
        c = self.client
        home = np.array([0.0, 0.4, 0.0, -1.6, 0.0, 1.1, 0.0]) + rng.uniform(-0.1, 0.1, 7)
        for j, q in zip(self.indices, home, strict=True):
            c.resetJointState(self.robot, j, float(q), 0.0)
        for cube, (x, y) in zip(self.cubes, self._placements(rng), strict=True):
            c.resetBasePositionAndOrientation(cube, self._at(x, y, 0.025), (0, 0, 0, 1))
            c.resetBaseVelocity(cube, (0, 0, 0), (0, 0, 0))
        self._script = {"phase": 0, "next_s": 0.0, "cube": 0}
        self.excitation.scale = self._excitation_scale()

    def _placements(self, rng: np.random.Generator) -> list[tuple[float, float]]:
        """Starting (x, y) of each cube, asset frame, metres (``options["cubes"]``)."""
        if self.placement == "home":
            jitter = rng.uniform(-0.03, 0.03, (len(CUBE_HOME), 2))  # the same draws as one cube at a time
            return [(x + dx, y + dy) for (x, y), (dx, dy) in zip(CUBE_HOME, jitter, strict=True)]
        spots: list[tuple[float, float]] = []
        while len(spots) < len(self.cubes):
            spots.append(_free_spot(rng, spots))
        return spots

    def _excitation_scale(self) -> np.ndarray:
        return (self.upper - self.lower) / 2 * self.config.excitation * self.excitation_gain

    def true_state(self) -> np.ndarray:
        c = self.client
        out = []
        for q, qd, _, torque in c.getJointStates(self.robot, self.indices):
            out += [q, qd, torque]
        ee_pos, ee_orn = c.getLinkState(self.robot, EE_LINK)[4:6]
        out += list(np.asarray(ee_pos) - self.origin) + list(canonical_quaternion(ee_orn))
        for cube in self.cubes:
            pos, orn = c.getBasePositionAndOrientation(cube)
            out += list(np.asarray(pos) - self.origin) + list(canonical_quaternion(orn))
        return np.array(out)

    def _command(self, effective: np.ndarray) -> None:
        for j, q, force, speed in zip(self.indices, effective, self.effort, self.max_velocity, strict=True):
            self.client.setJointMotorControl2(
                self.robot,
                j,
                pybullet.POSITION_CONTROL,
                targetPosition=float(q),
                force=float(force),
                maxVelocity=speed,
            )

    def _scripted(self) -> np.ndarray:
        c, s = self.client, self._script
        if self.placement != "home":  # every control step: a cube leaving the view is put back
            self._rescue_cubes()
        if self.time_s >= s["next_s"]:
            s["phase"] = (s["phase"] + 1) % 4
            s["next_s"] = self.time_s + PHASE_S
            if s["phase"] == 0:
                s["cube"] = int(self.rng_control.integers(len(self.cubes)))
            if self.placement == "home":
                self._rescue_cubes()
        cube = self.cubes[s["cube"]]
        pos = np.asarray(c.getBasePositionAndOrientation(cube)[0]) - self.origin
        direction = pos[:2] / (np.linalg.norm(pos[:2]) or 1.0)  # push away from the robot
        behind = pos[:2] - 0.12 * direction
        through = pos[:2] + 0.12 * direction
        goal = {
            0: (*behind, 0.25),
            1: (*behind, 0.05),
            2: (*through, 0.05),
            3: (*through, 0.3),
        }[s["phase"]]
        target = c.calculateInverseKinematics(
            self.robot,
            EE_LINK,
            (self.origin + goal).tolist(),
            c.getQuaternionFromEuler((0, math.pi, 0)),
            lowerLimits=self.lower.tolist(),
            upperLimits=self.upper.tolist(),
            jointRanges=(self.upper - self.lower).tolist(),
            restPoses=[0.0, 0.4, 0.0, -1.6, 0.0, 1.1, 0.0],
        )
        return np.asarray(target[: len(self.indices)])

    def _rescue_cubes(self) -> None:
        """Put back a cube that fell off the table (``cubes="home"``: at its home spot) or, with
        ``cubes="table"`` or ``"tray"``, one leaving the camera's field (on a free spot, drawn from the
        controller's generator so runs replay)."""
        c = self.client
        where = [np.asarray(c.getBasePositionAndOrientation(cube)[0]) - self.origin for cube in self.cubes]
        for k, (cube, pos) in enumerate(zip(self.cubes, where, strict=True)):
            if self.placement == "home":
                if not (pos[2] < -0.1 or abs(pos[0] - 0.5) > 0.7):
                    continue
                x, y = CUBE_HOME[k]
            else:
                off_centre = max(abs(pos[0] - CAMERA_CENTRE[0]), abs(pos[1] - CAMERA_CENTRE[1]))
                if not (pos[2] < -0.1 or off_centre > CUBE_FIELD_M):
                    continue
                others = [(float(p[0]), float(p[1])) for j, p in enumerate(where) if j != k]
                x, y = _free_spot(self.rng_control, others)
                where[k] = np.array([x, y, 0.025])
            c.resetBasePositionAndOrientation(cube, self._at(x, y, 0.025), (0, 0, 0, 1))
            c.resetBaseVelocity(cube, (0, 0, 0), (0, 0, 0))

    def _centring(self) -> np.ndarray:
        if self.placement != "home":  # the random controller keeps the cubes in view too
            self._rescue_cubes()
        state = self.true_state()
        q = state[0 : 3 * len(self.indices) : 3]
        return q + 0.05 * ((self.lower + self.upper) / 2 - q)

    def _save_extra(self) -> dict[str, Any]:
        return {"script": dict(self._script)}

    def _restore_extra(self, extra: dict[str, Any]) -> None:
        self._script = extra["script"]

    def _view(self) -> View:
        x, y = CAMERA_CENTRE
        return View(
            eye=tuple(self._at(x, y, CAMERA_HEIGHT_M)),
            target=tuple(self._at(x, y, 0.0)),
            up=(1.0, 0.0, 0.0),  # looking straight down: image up is +x, away from the robot
        )
