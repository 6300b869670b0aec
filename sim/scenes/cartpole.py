"""Cartpole: pybullet_data's ``cartpole.urdf``, a cart on a 30 m rail with a 1 m pole.

Sensors (``state`` stream, in order): ``cart_position`` m, ``cart_velocity`` m/s,
``pole_angle`` rad (0 upright, wrapped to [-pi, pi), positive tips towards +x),
``pole_angular_velocity`` rad/s. Actuator: ``cart_force`` N, bounded to +-``max_force_n``.

Physical notes (pybullet 3.2.7): the URDF's inertia tensors are placeholders (1 kg*m^2 for a
0.1 kg pole), so the model is loaded *without* URDF_USE_INERTIA_FROM_FILE and PyBullet derives
inertia from the collision boxes (pole: 0.1 kg, 1 m, I_com ~ 8.3e-3 kg*m^2 about y). The cart
force is applied as a velocity motor driven to saturation (target +-1e3 m/s, maximum force
|F|): the solver then applies exactly F at every physics step, like TORQUE_CONTROL re-applied
each substep but without a Python call per substep (they agree to ~1e-12). When a friction
fault gives the rail joint Coulomb friction, the scene switches to TORQUE_CONTROL re-applied
every substep plus PyBullet's friction motor.

Default controller: balance (state feedback) near upright, energy-pumping swing-up otherwise,
plus a weak centring term; with random excitation on top.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pybullet
import pybullet_data

from bridge import ActuatorSpec, SensorSpec
from sim.camera import View
from sim.scenes.base import BaseScene

SATURATING_SPEED = 1e3
_JOINTS = (0, 1)
_TWO_PI = 2 * math.pi
_get_joint_states = pybullet.getJointStates
_motor = pybullet.setJointMotorControl2
_VELOCITY_CONTROL = pybullet.VELOCITY_CONTROL
RAIL = "slider_to_cart"
HINGE = "cart_to_pole"
POLE_I_PIVOT = 0.1 * (1.0 + 0.05**2) / 12 + 0.1 * 0.5**2
"""Pole inertia about the hinge, kg*m^2 (box from collision shape + parallel axis)."""
POLE_MGL = 0.1 * 9.81 * 0.5


class CartpoleScene(BaseScene):
    kind = "cartpole"
    description = "cart on a rail balancing a pole (pybullet_data cartpole.urdf)"

    def _build(self) -> None:
        self.max_force_n = float(self.config.options.get("max_force_n", 10.0))
        if not self.max_force_n > 0:
            raise ValueError(f"cartpole option max_force_n={self.max_force_n!r} must be > 0 N")
        path = os.path.join(pybullet_data.getDataPath(), "cartpole.urdf")
        self.body = self.client.loadURDF(path, basePosition=self.origin.tolist(), useFixedBase=True)
        self._register_body(self.body)
        self._torque_mode = False
        self._seen_tick = -1
        self._seen = (0.0, 0.0, 0.0, 0.0)
        self._client_id = self.world.client_id

    def _specs(self) -> tuple[list[SensorSpec], list[ActuatorSpec]]:
        sensors = [
            SensorSpec("cart_position", "m", -15.0, 15.0, description="cart along the rail"),
            SensorSpec("cart_velocity", "m/s", -50.0, 50.0),
            SensorSpec("pole_angle", "rad", -math.pi, math.pi, description="0 upright, + towards +x"),
            SensorSpec("pole_angular_velocity", "rad/s", -100.0, 100.0),
        ]
        actuators = [
            ActuatorSpec("cart_force", "N", -self.max_force_n, self.max_force_n, "force on the cart")
        ]
        return sensors, actuators

    def _reset_bodies(self, rng: np.random.Generator) -> None:
        self.client.resetJointState(
            self.body, 0, float(rng.uniform(-0.2, 0.2)), float(rng.uniform(-0.1, 0.1))
        )
        self.client.resetJointState(
            self.body, 1, float(rng.uniform(-0.1, 0.1)), float(rng.uniform(-0.1, 0.1))
        )

    def read(self) -> tuple[float, float, float, float]:
        """(x, v, theta, omega) now, from one getJointStates call (remembered for this tick)."""
        rail, hinge = _get_joint_states(self.body, _JOINTS, physicsClientId=self._client_id)
        values = (rail[0], rail[1], (hinge[0] + math.pi) % _TWO_PI - math.pi, hinge[1])
        self._seen_tick, self._seen = self.world.tick, values
        return values

    def recent(self) -> tuple[float, float, float, float]:
        """:meth:`read`, reusing a read taken at this physics tick (the runner publishes the state
        after a step and controls before the next one: one read serves both)."""
        return self._seen if self._seen_tick == self.world.tick else self.read()

    def _invalidate_reads(self) -> None:
        self._seen_tick = -1

    def true_state(self) -> np.ndarray:
        return np.array(self.read())

    def observe(self) -> np.ndarray:
        sensors = self.sensors
        if sensors.trivial and not sensors.faulty:  # ideal instruments: the truth, fresh array
            return np.array(self.recent())  # the state read is reused by the next act()
        return sensors.measure(np.array(self.recent()), self.world.tick, self.world.time_s, self.rng_sensor)

    # --- actuation -----------------------------------------------------------------------------
    def _command(self, effective: np.ndarray) -> None:
        self._command_scalar(float(effective[0]))

    def _command_scalar(self, effective: float) -> None:
        self._force = effective
        if not self._torque_mode:
            _motor(
                self.body,
                0,
                _VELOCITY_CONTROL,
                targetVelocity=SATURATING_SPEED if effective >= 0.0 else -SATURATING_SPEED,
                force=effective if effective >= 0.0 else -effective,
                physicsClientId=self._client_id,
            )

    def _wants_substep(self) -> bool:
        return self._torque_mode

    def _substep(self) -> None:
        if self._torque_mode:
            pybullet.setJointMotorControl2(
                self.body, 0, pybullet.TORQUE_CONTROL, force=self._force, physicsClientId=self.world.client_id
            )

    def _friction_changed(self, joint: str) -> None:
        if joint != RAIL:
            return
        self._torque_mode = self.joint_friction[RAIL] > 0
        if not self._torque_mode:
            self._command(np.array([self._force]))
        self._update_substep()

    # --- controller ----------------------------------------------------------------------------
    def act(self, period_s: float) -> None:
        """Same actions as ``set_action(control(period_s))``, in scalar Python (~3x faster)."""
        mode = self.config.controller
        if mode == "none":
            self.hold_scalar(0.0)
            return
        x, v, theta, omega = self._seen if self._seen_tick == self.world.tick else self.read()
        base = balance_force(x, v, theta, omega) if mode == "default" else -0.5 * x - 0.5 * v
        self.hold_scalar(base + self.excitation.sample_scalar(self.rng_control, period_s))

    def _centring(self) -> np.ndarray:
        x, v, *_ = self.read()
        return np.array([-0.5 * x - 0.5 * v])

    def _scripted(self) -> np.ndarray:
        return np.array([balance_force(*self.read())])

    def _view(self) -> View:
        o = self.origin
        return View(eye=(o[0], o[1] - 3.5, o[2] + 0.5), target=(o[0], o[1], o[2] + 0.3))


def balance_force(x: float, v: float, theta: float, omega: float) -> float:
    """The default controller's cart force, N: state feedback near upright, energy pumping
    (swing-up) otherwise, with a weak centring term."""
    if abs(theta) < 0.5:
        return 1.0 * x + 1.8 * v + 20.0 * theta + 3.5 * omega
    # pole energy relative to upright rest, in units of 2*m*g*l (-1: hanging still);
    # cart acceleration a changes it at -m*l*a*cos(theta)*omega, so push with E*sign(...)
    energy = (0.5 * POLE_I_PIVOT * omega * omega + POLE_MGL * (math.cos(theta) - 1.0)) / (2 * POLE_MGL)
    return 25.0 * energy * math.copysign(1.0, omega * math.cos(theta)) - 0.5 * x - 0.8 * v
