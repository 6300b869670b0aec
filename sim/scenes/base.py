"""Machinery shared by every scene: world membership, actions, sensors, camera, faults, snapshots.

A concrete scene subclasses :class:`BaseScene` and provides ``_build`` (load bodies),
``_specs`` (sensors and actuators), ``_reset_bodies`` (seeded initial state), ``true_state``,
``_command`` (turn an action into PyBullet motor settings) and optionally ``_substep`` (work
before every physics step, e.g. re-applying TORQUE_CONTROL, which lasts one step only),
``_scripted`` (its default controller) and ``_centring``.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pybullet

from bridge import ActuatorSpec, SensorSpec, StreamSchema
from sim.camera import Camera, View, camera_schemas
from sim.controllers import Excitation, clip_to_bounds
from sim.faults import FaultError
from sim.scene import SceneConfig, SimEvent, validate_action
from sim.scenes.fault_effects import FaultBook
from sim.sensors import SensorArray
from sim.world import World, WorldConfig, WorldState

log = logging.getLogger(__name__)

LOCK_FORCE = 1e6
"""Friction (N or N*m) that holds a locked joint."""


@dataclass(slots=True)
class SceneState:
    """Python-side state of a scene (PyBullet's part lives in the world's saveState)."""

    rng_sensor: dict[str, Any]
    rng_control: dict[str, Any]
    excitation: Any
    action: np.ndarray
    sensors: Any
    faults: Any
    spawned: int
    extra: dict[str, Any]


class BaseScene:
    """Common implementation of :class:`sim.scene.Scene`."""

    kind: ClassVar[str] = "base"
    description: ClassVar[str] = ""

    def __init__(
        self, config: SceneConfig | None = None, world: World | None = None, origin=(0.0, 0.0, 0.0)
    ) -> None:
        self.config = config or SceneConfig()
        self.asset = self.config.asset or f"{self.kind}-0"
        self._owns_world = world is None
        self.world = world or World(WorldConfig(rate_hz=self.config.rate_hz, gui=self.config.gui))
        self.client = self.world.client
        self.dt = self.world.dt
        self.origin = np.asarray(origin, dtype=np.float64)
        self.links: dict[str, tuple[int, int]] = {}
        self.joints: dict[str, tuple[int, int]] = {}
        self.joint_type: dict[str, int] = {}
        self.joint_friction: dict[str, float] = {}
        self.joint_damping: dict[str, float] = {}
        self.spawned: list[tuple[int, int]] = []
        self.needs_substep = False
        self.next_fault_tick = math.inf
        try:
            self._build()
            sensors, actuators = self._specs()
        except BaseException:
            if self._owns_world:
                self.world.close()
            raise
        self.sensor_specs: tuple[SensorSpec, ...] = tuple(sensors)
        self.actuator_specs: tuple[ActuatorSpec, ...] = tuple(actuators)
        self.low = np.array([a.low for a in actuators], dtype=np.float64)
        self.high = np.array([a.high for a in actuators], dtype=np.float64)
        self._low0, self._high0 = (float(self.low[0]), float(self.high[0])) if actuators else (0.0, 0.0)
        self._gain0, self._dead0 = 1.0, 0.0
        self.actuator_index = {a.name: i for i, a in enumerate(actuators)}
        self.gain = np.ones(len(actuators))
        self.dead_zone = np.zeros(len(actuators))
        self.occlusion = 0.0
        self.sensors = SensorArray(tuple(s.name for s in sensors), self.config.sensors, self.config.rate_hz)
        self._schema = StreamSchema(
            asset=self.asset,
            stream="state",
            kind="vector",
            dtype="<f8",
            shape=(len(sensors),),
            rate_hz=self.config.rate_hz,
            sensors=self.sensor_specs,
            actuators=self.actuator_specs,
            description=self.description,
        )
        self._camera: Camera | None = None
        self.faults = FaultBook(self)
        self.events: list[SimEvent] = []
        self.action = np.zeros(len(actuators))
        self.excitation = Excitation.for_actuators(self.actuator_specs, self.config.excitation, self.dt)
        self.world.add(self)
        self.reset(self.config.seed)

    # --- to be provided by scenes ----------------------------------------------------------
    def _build(self) -> None:
        raise NotImplementedError

    def _specs(self) -> tuple[list[SensorSpec], list[ActuatorSpec]]:
        raise NotImplementedError

    def _reset_bodies(self, rng: np.random.Generator) -> None:
        raise NotImplementedError

    def true_state(self) -> np.ndarray:
        raise NotImplementedError

    def _command(self, effective: np.ndarray) -> None:
        """Make PyBullet apply ``effective`` (after saturation and actuator faults)."""
        raise NotImplementedError

    def _substep(self) -> None:
        """Work before each physics step (only called while ``needs_substep``)."""

    def _scripted(self) -> np.ndarray:
        return np.zeros(len(self.actuator_specs))

    def _centring(self) -> np.ndarray:
        return np.zeros(len(self.actuator_specs))

    def _view(self) -> View:
        return View(eye=tuple(self.origin + np.array((0.0, -3.0, 1.0))), target=tuple(self.origin))

    def _save_extra(self) -> dict[str, Any]:
        return {}

    def _restore_extra(self, extra: dict[str, Any]) -> None:
        pass

    # --- bodies ----------------------------------------------------------------------------
    def _register_body(self, body: int, prefix: str = "") -> None:
        """Name a body's links and movable joints; disable PyBullet's default braking motors."""
        base_name = self.client.getBodyInfo(body)[0].decode()
        self.links[prefix + base_name] = (body, -1)
        # PyBullet damps every link by default (0.04, velocity-squared drag); losses here are
        # modelled explicitly (joint damping from the URDF, friction faults), so remove it.
        self.client.changeDynamics(body, -1, linearDamping=0.0, angularDamping=0.0)
        for j in range(self.client.getNumJoints(body)):
            self.client.changeDynamics(body, j, linearDamping=0.0, angularDamping=0.0)
            info = self.client.getJointInfo(body, j)
            joint, link, jtype = prefix + info[1].decode(), prefix + info[12].decode(), info[2]
            self.links[link] = (body, j)
            if jtype in (pybullet.JOINT_REVOLUTE, pybullet.JOINT_PRISMATIC):
                self.joints[joint] = (body, j)
                self.joint_type[joint] = jtype
                self.joint_friction[joint] = 0.0
                self.joint_damping[joint] = float(info[6])
                # default velocity motors brake joints until disabled with force=0
                self.client.setJointMotorControl2(body, j, pybullet.VELOCITY_CONTROL, force=0.0)

    def set_joint_friction(self, joint: str, coulomb: float) -> None:
        """Coulomb friction (N or N*m) as PyBullet models it: a zero-velocity motor of that force."""
        body, j = self.joints[joint]
        self.joint_friction[joint] = coulomb
        self.client.setJointMotorControl2(
            body, j, pybullet.VELOCITY_CONTROL, targetVelocity=0.0, force=coulomb
        )
        self._friction_changed(joint)

    def _friction_changed(self, joint: str) -> None:
        """Hook: a scene whose actuators use velocity motors re-plans them here."""

    def set_joint_damping(self, joint: str, damping: float) -> None:
        body, j = self.joints[joint]
        self.joint_damping[joint] = damping
        self.client.changeDynamics(body, j, jointDamping=damping)

    def link_pose(self, link: str) -> tuple[np.ndarray, np.ndarray]:
        """(position (3,) m, quaternion (4,) xyzw) of a link's centre of mass, world frame."""
        body, index = self.links[link]
        if index == -1:
            pos, orn = self.client.getBasePositionAndOrientation(body)
        else:
            pos, orn = self.client.getLinkState(body, index)[:2]
        return np.asarray(pos), np.asarray(orn)

    # --- Scene protocol ----------------------------------------------------------------------
    @property
    def time_s(self) -> float:
        return self.world.time_s

    @property
    def tick(self) -> int:
        return self.world.tick

    def schema(self) -> StreamSchema:
        return self._schema

    def camera_schemas(self) -> list[StreamSchema]:
        return camera_schemas(self.asset, self.config.camera, f"{self.kind} camera")

    def reset(self, seed: int | None = None) -> None:
        seed = self.config.seed if seed is None else seed
        self.faults.clear()
        for body, constraint in reversed(self.spawned):
            self.client.removeConstraint(constraint) if constraint >= 0 else None
            self.client.removeBody(body)
        self.spawned.clear()
        self.rng_init = np.random.default_rng([seed, 0])
        self.rng_sensor = np.random.default_rng([seed, 1])
        self.rng_control = np.random.default_rng([seed, 2])
        self.sensors.reset()
        self.excitation.reset()
        self._invalidate_reads()
        self.gain[:] = 1.0
        self.dead_zone[:] = 0.0
        self.occlusion = 0.0
        if self._owns_world:
            self.world.tick = 0
        self._reset_bodies(self.rng_init)
        self.set_action(np.zeros(len(self.actuator_specs)))
        self._update_substep()

    def _invalidate_reads(self) -> None:
        """Hook: forget joint states a scene cached for this tick (after reset/restore)."""

    def set_action(self, values: np.ndarray) -> None:
        """Hold ``values`` (n_actuators,) until the next call: saturated at the bounds, then
        weakened and dead-zoned by actuator faults."""
        commanded = clip_to_bounds(np.asarray(values, dtype=np.float64), self.low, self.high)
        self.action = commanded
        if len(commanded):  # actuator faults change gain/dead_zone, then call set_action
            self._gain0, self._dead0 = float(self.gain[0]), float(self.dead_zone[0])
        effective = commanded * self.gain
        if self.dead_zone.any():
            effective = np.where(np.abs(effective) < self.dead_zone, 0.0, effective)
        self._command(effective)

    def hold_scalar(self, value: float) -> None:
        """:meth:`set_action` for a one-actuator scene, without numpy (the runner's hot path)."""
        commanded = min(max(value, self._low0), self._high0)
        self.action[0] = commanded
        effective = commanded * self._gain0
        if self._dead0 and abs(effective) < self._dead0:
            effective = 0.0
        self._command_scalar(effective)

    def _command_scalar(self, effective: float) -> None:
        self._command(np.array([effective]))

    def step(self, action: np.ndarray) -> None:
        if len(self.world.scenes) != 1:
            raise RuntimeError(f"{self.asset} shares its world; step the world (World.step) instead")
        self.set_action(validate_action(self._schema, action))
        self.world.step()

    def before_substep(self) -> None:
        if self.sensors.max_latency:
            self.sensors.record(self.true_state())
        self._substep()

    def _update_substep(self) -> None:
        self.needs_substep = bool(self.sensors.max_latency) or self._wants_substep()
        self.world.refresh()

    def _wants_substep(self) -> bool:
        return False

    def observe(self) -> np.ndarray:
        sensors = self.sensors
        if sensors.trivial and not sensors.faulty:  # ideal instruments: the truth, fresh array
            return self.true_state()
        return self.sensors.measure(self.true_state(), self.world.tick, self.world.time_s, self.rng_sensor)

    def camera(self) -> tuple[np.ndarray, np.ndarray | None]:
        if self._camera is None:
            self._camera = Camera(self.client, self.config.camera, self._view())
        return self._camera.render(self.occlusion)

    def control(self, period_s: float | None = None) -> np.ndarray:
        """The controller's action for the current state; ``period_s``: time since the last call
        (the control period; default one physics tick), which advances the excitation."""
        mode = self.config.controller
        if mode == "none":
            return np.zeros(len(self.actuator_specs))
        excitation = self.excitation.sample(self.rng_control, period_s)
        base = self._scripted() if mode == "default" else self._centring()
        return clip_to_bounds(base + excitation, self.low, self.high)

    def act(self, period_s: float) -> None:
        """Run the controller once per control period and hold its action (the runner calls
        this; scenes override it with a faster equivalent giving the same actions)."""
        self.set_action(self.control(period_s))

    # --- faults ------------------------------------------------------------------------------
    def apply_fault(self, fault: Any) -> None:
        self.faults.schedule(fault)

    def update_faults(self) -> None:
        self.faults.update()

    def check_target(self, kind: str, name: str) -> None:
        table = {
            "link": self.links,
            "joint": self.joints,
            "actuator": self.actuator_index,
            "sensor": self.sensors.index,
        }[kind]
        if name not in table:
            raise FaultError(f"{self.asset}: no {kind} named {name!r}; {kind}s here: {sorted(table)}")

    def pop_events(self) -> list[SimEvent]:
        events, self.events = self.events, []
        return events

    # --- snapshots ---------------------------------------------------------------------------
    def save_python_state(self) -> SceneState:
        return SceneState(
            rng_sensor=copy.deepcopy(self.rng_sensor.bit_generator.state),
            rng_control=copy.deepcopy(self.rng_control.bit_generator.state),
            excitation=self.excitation.save(),
            action=self.action.copy(),
            sensors=(self.sensors.state.copy(), list(self.sensors.history)),
            faults=self.faults.save(),
            spawned=len(self.spawned),
            extra=copy.deepcopy(self._save_extra()),
        )

    def remove_spawned_since(self, state: SceneState) -> None:
        while len(self.spawned) > state.spawned:
            body, constraint = self.spawned.pop()
            if constraint >= 0:
                self.client.removeConstraint(constraint)
            self.client.removeBody(body)

    def restore_python_state(self, state: SceneState) -> None:
        self.rng_sensor.bit_generator.state = copy.deepcopy(state.rng_sensor)
        self.rng_control.bit_generator.state = copy.deepcopy(state.rng_control)
        self.excitation.load(state.excitation)
        self._invalidate_reads()
        sensor_state, history = state.sensors
        self.sensors.state = sensor_state.copy()
        self.sensors.history.clear()
        self.sensors.history.extend(history)
        self.faults.restore(state.faults)
        self.sensors.mark_faulty()
        self._restore_extra(copy.deepcopy(state.extra))
        self.set_action(state.action)
        self._update_substep()

    def save_state(self) -> WorldState:
        if len(self.world.scenes) != 1:
            raise RuntimeError(f"{self.asset} shares its world; snapshot the world instead")
        return self.world.save_state()

    def restore_state(self, state: WorldState) -> None:
        self.world.restore_state(state)

    def close(self) -> None:
        if self._owns_world:
            self.world.close()

    def __enter__(self) -> BaseScene:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(asset={self.asset!r}, sensors={len(self.sensor_specs)}, "
            f"actuators={len(self.actuator_specs)}, t={self.time_s:.3f}s)"
        )
