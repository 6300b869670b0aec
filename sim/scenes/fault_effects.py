"""How each fault of :mod:`sim.faults` acts on a scene, over time, and how forks undo it.

A :class:`FaultBook` holds a scene's scheduled faults. Each record keeps the values the fault
found when it began (``base``) and its current ``level`` (0: no effect, 1: full effect, in
between while ramping); effects are a pure function of (base, level), so a fork can revert every
started fault (in reverse order) and re-apply the snapshot's records exactly.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pybullet

from sim import faults as fl
from sim.scene import SimEvent

if TYPE_CHECKING:
    from sim.scenes.base import BaseScene

PENDING, ACTIVE, ENDED = "pending", "active", "ended"


@dataclass(slots=True)
class FaultRecord:
    fault: fl.Fault
    status: str = PENDING
    level: float = 0.0
    base: dict[str, Any] = field(default_factory=dict)


def _lerp(a: float, b: float, level: float) -> float:
    return a + (b - a) * level


class FaultBook:
    """The faults of one scene: schedule, advance with sim time, save, restore."""

    def __init__(self, scene: BaseScene) -> None:
        self.scene = scene
        self.records: list[FaultRecord] = []

    # --- scheduling ----------------------------------------------------------------------------
    def schedule(self, fault: fl.Fault) -> None:
        if not isinstance(fault, fl.Fault):
            raise fl.FaultError(f"{self.scene.asset}: {fault!r} is not a fault (see sim.faults)")
        if fault.TARGET:
            self.scene.check_target(fault.TARGET, fault.target)
        self.records.append(FaultRecord(fault))
        self._plan()

    def _plan(self) -> None:
        scene = self.scene
        rate = scene.world.config.rate_hz
        nxt = math.inf
        for rec in self.records:
            f = rec.fault
            if rec.status == PENDING:
                nxt = min(nxt, math.ceil(f.at_s * rate - 1e-9))
            elif rec.status == ACTIVE:
                if rec.level < 1.0:
                    nxt = min(nxt, scene.world.tick + 1)
                elif f.duration_s is not None:
                    nxt = min(nxt, math.ceil((f.at_s + f.ramp_s + f.duration_s) * rate - 1e-9))
        scene.next_fault_tick = nxt
        scene.world.refresh()

    def update(self) -> None:
        """Start, ramp and end faults according to the scene's sim time."""
        t = self.scene.time_s + 1e-12
        for rec in self.records:
            f = rec.fault
            if rec.status == PENDING and t >= f.at_s:
                rec.status = ACTIVE
                rec.base = self._capture(f)
                self._start(rec)
                self._event(rec, f.KIND, f"{f.KIND} began", f.params())
            if rec.status == ACTIVE:
                level = 1.0 if f.ramp_s == 0 else min(1.0, (t - f.at_s) / f.ramp_s)
                if level != rec.level:
                    rec.level = level
                    self._effect(rec, level)
                if f.duration_s is not None and t >= f.at_s + f.ramp_s + f.duration_s:
                    self._effect(rec, 0.0)
                    rec.status, rec.level = ENDED, 0.0
                    self._event(rec, f"{f.KIND}_cleared", f"{f.KIND} ended", {"kind": f.KIND})
        self.scene.sensors.mark_faulty()
        self._plan()

    def _event(self, rec: FaultRecord, name: str, message: str, params: dict[str, Any]) -> None:
        scene = self.scene
        params = {**params, "sim_time_s": round(scene.time_s, 9), "target": rec.fault.target}
        scene.events.append(
            SimEvent(scene.time_s, "fault", name, f"{scene.asset}: {message}", "warning", params)
        )

    # --- snapshots -----------------------------------------------------------------------------
    def _revert_all(self) -> None:
        for rec in reversed(self.records):
            if rec.status == ACTIVE:
                self._effect(rec, 0.0)

    def clear(self) -> None:
        self._revert_all()
        self.records = []
        self.scene.next_fault_tick = math.inf

    def save(self) -> list[FaultRecord]:
        return copy.deepcopy(self.records)

    def restore(self, records: list[FaultRecord]) -> None:
        self._revert_all()
        self.records = copy.deepcopy(records)
        for rec in self.records:
            if rec.status == ACTIVE:
                self._effect(rec, rec.level)
        self._plan()

    # --- effects -------------------------------------------------------------------------------
    def _capture(self, f: fl.Fault) -> dict[str, Any]:
        s = self.scene
        if isinstance(f, fl.MassChange):
            body, link = s.links[f.link]
            info = s.client.getDynamicsInfo(body, link)
            return {"mass": info[0], "inertia": tuple(info[2])}
        if isinstance(f, (fl.FrictionChange, fl.JointLock)):
            return {"coulomb": s.joint_friction[f.joint]}
        if isinstance(f, fl.DampingChange):
            return {"damping": s.joint_damping[f.joint]}
        if isinstance(f, fl.ActuatorWeakness):
            return {"gain": float(s.gain[s.actuator_index[f.actuator]])}
        if isinstance(f, fl.ActuatorDeadZone):
            return {"width": float(s.dead_zone[s.actuator_index[f.actuator]])}
        if isinstance(f, fl.SensorBias):
            return {"bias": float(s.sensors.state.fault_bias[s.sensors.index[f.sensor]])}
        if isinstance(f, fl.SensorStuck):
            i = s.sensors.index[f.sensor]
            value = f.value if f.value is not None else float(s.sensors.state.held[i])
            return {"value": value}
        if isinstance(f, fl.CameraOcclusion):
            return {"occlusion": s.occlusion}
        return {}

    def _start(self, rec: FaultRecord) -> None:
        """One-off actions when a fault begins (spawning bodies)."""
        f, s = rec.fault, self.scene
        if isinstance(f, fl.Payload):
            body, link = s.links[f.link]
            pos, orn = s.link_pose(f.link)
            world_pos, _ = s.client.multiplyTransforms(pos, orn, f.offset_m, (0, 0, 0, 1))
            shape = s.client.createVisualShape(pybullet.GEOM_SPHERE, radius=0.03, rgbaColor=(1, 0, 0, 1))
            payload = s.client.createMultiBody(
                baseMass=f.mass_kg, baseVisualShapeIndex=shape, basePosition=world_pos, baseOrientation=orn
            )
            s.client.changeDynamics(payload, -1, localInertiaDiagonal=(1e-6, 1e-6, 1e-6))
            constraint = s.client.createConstraint(
                body, link, payload, -1, pybullet.JOINT_FIXED, (0, 0, 0), f.offset_m, (0, 0, 0)
            )
            s.client.changeConstraint(constraint, maxForce=1e7)
            s.spawned.append((payload, constraint))
        elif isinstance(f, fl.Collision):
            pos, _ = s.link_pose(f.link)
            direction = np.asarray(f.direction, dtype=np.float64)
            direction /= np.linalg.norm(direction)
            start = pos - direction * 0.6
            radius = 0.06
            col = s.client.createCollisionShape(pybullet.GEOM_SPHERE, radius=radius)
            vis = s.client.createVisualShape(pybullet.GEOM_SPHERE, radius=radius, rgbaColor=(1, 0.5, 0, 1))
            ball = s.client.createMultiBody(
                baseMass=f.mass_kg,
                baseCollisionShapeIndex=col,
                baseVisualShapeIndex=vis,
                basePosition=start.tolist(),
            )
            s.client.resetBaseVelocity(ball, (direction * f.speed_m_s).tolist())
            s.spawned.append((ball, -1))
        elif isinstance(f, fl.SensorDrift):
            i = s.sensors.index[f.sensor]
            s.sensors.state.drift_start_s[i] = f.at_s

    def _effect(self, rec: FaultRecord, level: float) -> None:
        """Put the fault's effect at ``level`` (0: as it was when the fault began)."""
        f, s, base = rec.fault, self.scene, rec.base
        if isinstance(f, fl.MassChange):
            body, link = s.links[f.link]
            factor = _lerp(1.0, f.factor, level)
            inertia = [v * factor for v in base["inertia"]]
            s.client.changeDynamics(body, link, mass=base["mass"] * factor, localInertiaDiagonal=inertia)
        elif isinstance(f, fl.FrictionChange):
            s.set_joint_friction(f.joint, _lerp(base["coulomb"], f.coulomb, level))
        elif isinstance(f, fl.JointLock):
            from sim.scenes.base import LOCK_FORCE

            s.set_joint_friction(f.joint, LOCK_FORCE if level > 0 else base["coulomb"])
        elif isinstance(f, fl.DampingChange):
            s.set_joint_damping(f.joint, _lerp(base["damping"], f.damping, level))
        elif isinstance(f, fl.ActuatorWeakness):
            s.gain[s.actuator_index[f.actuator]] = _lerp(base["gain"], f.gain, level)
            s.set_action(s.action)
        elif isinstance(f, fl.ActuatorDeadZone):
            s.dead_zone[s.actuator_index[f.actuator]] = _lerp(base["width"], f.width, level)
            s.set_action(s.action)
        elif isinstance(f, fl.SensorBias):
            s.sensors.state.fault_bias[s.sensors.index[f.sensor]] = _lerp(base["bias"], f.bias, level)
        elif isinstance(f, fl.SensorDrift):
            s.sensors.state.drift_per_s[s.sensors.index[f.sensor]] = f.rate_per_s if level > 0 else 0.0
        elif isinstance(f, fl.SensorStuck):
            s.sensors.state.stuck[s.sensors.index[f.sensor]] = base["value"] if level > 0 else np.nan
        elif isinstance(f, fl.SensorDropout):
            s.sensors.state.dropout[s.sensors.index[f.sensor]] = level > 0
        elif isinstance(f, fl.NoiseBurst):
            s.sensors.state.extra_noise[s.sensors.index[f.sensor]] = f.std * level
        elif isinstance(f, fl.CameraOcclusion):
            s.occlusion = _lerp(base["occlusion"], f.fraction, level)
        # Payload and Collision act through the bodies spawned in _start.
        s.sensors.mark_faulty()
