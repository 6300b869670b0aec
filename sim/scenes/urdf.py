"""URDF: any robot description becomes a scene.

The model is loaded with a fixed base and, by default, ``URDF_USE_INERTIA_FROM_FILE`` (PyBullet
otherwise ignores the file's inertia tensors and derives them from collision shapes; option
``inertia_from_file=False`` restores that). Every movable (revolute or prismatic) joint gives
two sensors, ``<joint>_position`` (rad or m; range from the URDF limits when they are set) and
``<joint>_velocity`` (rad/s or m/s), and one actuator: ``<joint>_torque`` (N*m or N, bounded by
the URDF ``effort``, or 10 when the file gives none) in the default ``actuator="torque"`` mode,
re-applied before every physics step; or ``<joint>_velocity_cmd`` (rad/s or m/s, bounded by the
URDF ``velocity``, or 5 when none) with ``actuator="velocity"``, a velocity motor of at most
``effort``. Default controller: PD towards random waypoints inside the joint limits, with gravity
compensation from PyBullet's inverse dynamics.

A path that does not exist or does not parse raises :class:`UrdfError` naming the path.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np
import pybullet

from bridge import ActuatorSpec, SensorSpec
from sim.camera import View
from sim.faults import FaultError
from sim.scenes.base import BaseScene

DEFAULT_EFFORT = 10.0
DEFAULT_VELOCITY = 5.0
WAYPOINT_S = 2.0


class UrdfError(ValueError):
    """A URDF that cannot become a scene (missing, unparsable, nothing movable)."""


def check_urdf(path: str | None) -> str:
    """The absolute path of a readable, well-formed URDF, or :class:`UrdfError`."""
    return _parse_urdf(path)[0]


def _parse_urdf(path: str | None) -> tuple[str, ET.Element]:
    if not path:
        raise UrdfError("the urdf scene needs a URDF path (--urdf PATH)")
    full = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(full):
        raise UrdfError(f"URDF {path!r} does not exist")
    try:
        root = ET.parse(full).getroot()
    except ET.ParseError as exc:
        raise UrdfError(f"URDF {path!r} does not parse as XML: {exc}") from None
    if root.tag != "robot":
        raise UrdfError(f"URDF {path!r}: root element is <{root.tag}>, expected <robot>")
    return full, root


class UrdfScene(BaseScene):
    kind = "urdf"
    description = "a robot from a URDF file: joint positions and velocities, joint actuators"

    def _build(self) -> None:
        path, root = _parse_urdf(self.config.urdf)
        continuous = {j.get("name") for j in root.iter("joint") if j.get("type") == "continuous"}
        opts = self.config.options
        self.mode = opts.get("actuator", "torque")
        if self.mode not in ("torque", "velocity"):
            raise ValueError(f"urdf option actuator={self.mode!r} must be 'torque' or 'velocity'")
        flags = pybullet.URDF_USE_INERTIA_FROM_FILE if opts.get("inertia_from_file", True) else 0
        try:
            self.body = self.client.loadURDF(
                path, basePosition=self.origin.tolist(), useFixedBase=True, flags=flags
            )
        except pybullet.error as exc:
            raise UrdfError(f"URDF {self.config.urdf!r}: PyBullet could not load it ({exc})") from None
        self.path = path
        self._register_body(self.body)
        if not self.joints:
            raise UrdfError(f"URDF {self.config.urdf!r} has no revolute or prismatic joint to simulate")
        self.names = list(self.joints)
        self.indices = [self.joints[n][1] for n in self.names]
        # PyBullet reports (and ignores) limits on 'continuous' joints; treat those as unlimited
        self.info = [
            (*i[:8], 0.0, -1.0, *i[10:]) if n in continuous else i
            for n, i in zip(
                self.names, (self.client.getJointInfo(self.body, j) for j in self.indices), strict=True
            )
        ]
        self.effort = np.array([i[10] if i[10] > 0 else DEFAULT_EFFORT for i in self.info])
        self.max_velocity = np.array([i[11] if i[11] > 0 else DEFAULT_VELOCITY for i in self.info])
        self.lower = np.array([i[8] if i[8] < i[9] else -math.pi for i in self.info])
        self.upper = np.array([i[9] if i[8] < i[9] else math.pi for i in self.info])
        self._command_values = np.zeros(len(self.names))
        self._plan = {"target": np.zeros(len(self.names)), "next_s": 0.0}

    def _specs(self) -> tuple[list[SensorSpec], list[ActuatorSpec]]:
        sensors, actuators = [], []
        for name, info, effort, vmax in zip(
            self.names, self.info, self.effort, self.max_velocity, strict=True
        ):
            prismatic = self.joint_type[name] == pybullet.JOINT_PRISMATIC
            pos_unit, vel_unit = ("m", "m/s") if prismatic else ("rad", "rad/s")
            # PyBullet enforces some URDF limits (not those of 'continuous' joints), so the
            # plausible range is the limits widened by their span (at least 0.5 each side)
            limited = info[8] < info[9]
            margin = max(0.5, info[9] - info[8])
            low, high = (info[8] - margin, info[9] + margin) if limited else (-math.inf, math.inf)
            sensors.append(SensorSpec(f"{name}_position", pos_unit, low, high))
            speed = max(20.0 * vmax, 20.0)
            sensors.append(SensorSpec(f"{name}_velocity", vel_unit, -speed, speed))
            if self.mode == "torque":
                unit = "N" if prismatic else "N*m"
                actuators.append(ActuatorSpec(f"{name}_torque", unit, -effort, effort))
            else:
                actuators.append(ActuatorSpec(f"{name}_velocity_cmd", vel_unit, -vmax, vmax))
        return sensors, actuators

    def _reset_bodies(self, rng: np.random.Generator) -> None:
        span = self.upper - self.lower
        start = self.lower + span * rng.uniform(0.4, 0.6, len(self.names))
        for j, q in zip(self.indices, start, strict=True):
            self.client.resetJointState(self.body, j, float(q), 0.0)
        self._plan = {"target": start.copy(), "next_s": 0.0}

    def true_state(self) -> np.ndarray:
        states = self.client.getJointStates(self.body, self.indices)
        out = np.empty(2 * len(states))
        for k, s in enumerate(states):
            out[2 * k] = s[0]
            out[2 * k + 1] = s[1]
        return out

    # --- actuation -----------------------------------------------------------------------------
    def _command(self, effective: np.ndarray) -> None:
        self._command_values = effective
        if self.mode == "velocity":
            self.client.setJointMotorControlArray(
                self.body,
                self.indices,
                pybullet.VELOCITY_CONTROL,
                targetVelocities=effective.tolist(),
                forces=self.effort.tolist(),
            )

    def _wants_substep(self) -> bool:
        return self.mode == "torque"

    def _substep(self) -> None:
        self.client.setJointMotorControlArray(
            self.body, self.indices, pybullet.TORQUE_CONTROL, forces=self._command_values.tolist()
        )

    def set_joint_friction(self, joint: str, coulomb: float) -> None:
        if self.mode == "velocity":
            raise FaultError(
                f"{self.asset}: joint {joint!r} is velocity-driven; friction faults need actuator=torque"
            )
        super().set_joint_friction(joint, coulomb)

    # --- controller ----------------------------------------------------------------------------
    def _gravity(self, q: list[float]) -> np.ndarray:
        n = len(q)
        all_q = [
            s[0] for s in self.client.getJointStates(self.body, range(self.client.getNumJoints(self.body)))
        ]
        movable = self._movable_order()
        full = [all_q[j] for j in movable]
        tau = self.client.calculateInverseDynamics(self.body, full, [0.0] * len(full), [0.0] * len(full))
        pos = {j: k for k, j in enumerate(movable)}
        return np.array([tau[pos[j]] for j in self.indices]) if len(tau) == len(movable) else np.zeros(n)

    def _movable_order(self) -> list[int]:
        if not hasattr(self, "_movable"):
            self._movable = [
                j
                for j in range(self.client.getNumJoints(self.body))
                if self.client.getJointInfo(self.body, j)[2] != pybullet.JOINT_FIXED
            ]
        return self._movable

    def _scripted(self) -> np.ndarray:
        plan = self._plan
        if self.time_s >= plan["next_s"]:
            plan["target"] = self.lower + (self.upper - self.lower) * self.rng_control.uniform(
                0.2, 0.8, len(self.names)
            )
            plan["next_s"] = self.time_s + WAYPOINT_S
        state = self.true_state()
        q, qd = state[0::2], state[1::2]
        if self.mode == "velocity":
            return 2.0 * (plan["target"] - q)
        kp = np.minimum(0.3 * self.effort, 100.0)
        try:
            gravity = self._gravity(list(q))
        except pybullet.error:
            gravity = np.zeros(len(q))
        return kp * (plan["target"] - q) - 0.1 * kp * qd + gravity

    def _centring(self) -> np.ndarray:
        state = self.true_state()
        q, qd = state[0::2], state[1::2]
        mid = (self.lower + self.upper) / 2
        scale = self.effort if self.mode == "torque" else np.ones(len(q))
        return 0.05 * scale * (mid - q) - 0.01 * scale * qd

    def _save_extra(self) -> dict[str, Any]:
        return {"plan": {"target": self._plan["target"].copy(), "next_s": self._plan["next_s"]}}

    def _restore_extra(self, extra: dict[str, Any]) -> None:
        self._plan = extra["plan"]

    def _view(self) -> View:
        low, high = self.client.getAABB(self.body)
        for j in range(self.client.getNumJoints(self.body)):
            a, b = self.client.getAABB(self.body, j)
            low = np.minimum(low, a)
            high = np.maximum(high, b)
        centre = (np.asarray(low) + np.asarray(high)) / 2
        size = float(np.max(np.asarray(high) - np.asarray(low))) or 1.0
        eye = centre + np.array([0.0, -2.0 * size, 0.8 * size])
        return View(eye=tuple(eye), target=tuple(centre))
