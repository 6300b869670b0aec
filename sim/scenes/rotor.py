"""Rotor: an industrial machine, a motor-driven vertical shaft with a flywheel on bearings.

Physics in PyBullet: a fixed housing and a flywheel (steel disc, radius 0.2 m, 0.05 m thick,
``mass_kg`` 20 kg, polar inertia 0.5*m*r^2 = 0.4 kg*m^2) on a revolute joint ``shaft`` (axis z).
The motor torque is TORQUE_CONTROL, re-applied before every physics step (it lasts one step).
Bearing friction is PyBullet's: Coulomb friction as a zero-velocity motor of maximum torque
``c`` N*m on the joint, viscous friction as the joint's damping ``b`` N*m*s/rad.

Sensors (``state`` stream): ``speed`` rad/s; ``torque`` N*m (motor torque delivered to the
shaft); ``vibration`` m/s^2, radial (x) acceleration of the housing from the rotor imbalance
``u`` kg*m: a_x = u * (omega^2 cos(theta) + alpha sin(theta)) / M_housing, the rotating
imbalance force over the housing's effective mass (rigid rotor, housing on soft mounts, below
the mounts' resonance); ``bearing_temperature`` K from a first-order thermal model driven by
the friction losses (below); ``vibration_rms`` m/s^2, the root mean square of ``vibration``
over the last ``vibration_window_s`` seconds (option, default 1 s: 240 physics ticks, the
current one included; over the ticks so far until the window fills), what a condition monitor
trends (an imbalance at constant speed omega reads u omega^2 / (M_housing sqrt 2)). Thermal model:

    C dT/dt = P - (T - T_amb) / R,    P = c_eff * |omega| + b * omega^2   [W]

with heat capacity C = 2400 J/K, thermal resistance R = 0.25 K/W (time constant R*C = 600 s),
ambient T_amb = 293.15 K, integrated exactly over each physics step (zero-order hold on P).

Degradation: the bearing's Coulomb friction grows with running time,
c_eff(t) = c * (1 + ``wear_per_hour`` * t / 3600 s) (updated every simulated second), so
temperature creeps up over hours of sim time and a twin can forecast time to a limit.
A FrictionChange fault on joint ``shaft`` sets ``c``.

Actuator, by ``options={"actuator": ...}``:

* ``"torque"`` (default): ``motor_torque`` N*m, +-``max_torque_nm`` (20). Default controller: a
  PI speed loop (run at the control rate) following set-points drawn every 30 s in
  [50, 250] rad/s, plus excitation.
* ``"speed"``: ``speed_setpoint`` rad/s, +-``max_speed_rad_s`` (300): the drive's own PI speed
  loop runs inside the scene at every physics step (240 Hz):
  tau = clip(Kp e + I + c sign(w*) + b w*, +-max_torque) (nominal c, b: wear and faults
  show as extra torque), dI/dt = Ki e (frozen while the
  output saturates in the direction of the error: anti-windup), with ``speed_kp`` 4 N*m*s/rad
  and ``speed_ki`` 10 N*m/rad (critically damped for the 0.4 kg*m^2 flywheel: w_n = 5 rad/s).
  The ``torque`` sensor reads the torque the loop delivers. Actuator faults act on the motor:
  weakness scales the delivered torque (the loop's integral compensates until saturation), a
  dead zone zeroes small torque commands. Default controller: the same set-point schedule
  (with excitation at a tenth of the usual scale).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pybullet

from bridge import ActuatorSpec, SensorSpec
from sim.camera import View
from sim.scenes.base import BaseScene

SHAFT = "shaft"
ACTUATOR_MODES = ("torque", "speed")
AMBIENT_K = 293.15
HEAT_CAPACITY_J_K = 2400.0
THERMAL_RESISTANCE_K_W = 0.25
HOUSING_MASS_KG = 5.0
RADIUS_M = 0.2
THICKNESS_M = 0.05
VIBRATION_WINDOW_S = 1.0


class RotorScene(BaseScene):
    kind = "rotor"
    description = "motor-driven flywheel on bearings with imbalance vibration and bearing heating"

    def _build(self) -> None:
        opts = self.config.options
        self.mass_kg = float(opts.get("mass_kg", 20.0))
        self.max_torque_nm = float(opts.get("max_torque_nm", 20.0))
        self.coulomb_nm = float(opts.get("coulomb_nm", 0.2))
        self.viscous = float(opts.get("viscous_nm_s", 0.002))
        self.imbalance_kg_m = float(opts.get("imbalance_kg_m", 2e-4))
        self.wear_per_hour = float(opts.get("wear_per_hour", 0.0))
        window_s = float(opts.get("vibration_window_s", VIBRATION_WINDOW_S))
        self.window_ticks = round(window_s * self.world.config.rate_hz)
        if not (math.isfinite(window_s) and 1 <= self.window_ticks <= 10**6):
            raise ValueError(f"rotor option vibration_window_s={window_s!r} must span 1 to 1e6 physics ticks")
        self.mode = str(opts.get("actuator", "torque"))
        if self.mode not in ACTUATOR_MODES:
            raise ValueError(f"rotor option actuator={self.mode!r} must be one of {ACTUATOR_MODES}")
        self.max_speed = float(opts.get("max_speed_rad_s", 300.0))
        self.speed_kp = float(opts.get("speed_kp", 4.0))
        self.speed_ki = float(opts.get("speed_ki", 10.0))
        for name in ("max_speed", "speed_kp"):
            if not getattr(self, name) > 0:
                raise ValueError(f"rotor option {name}={getattr(self, name)!r} must be > 0")
        for name in ("mass_kg", "max_torque_nm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"rotor option {name}={getattr(self, name)!r} must be > 0")
        for name in ("coulomb_nm", "viscous", "imbalance_kg_m", "wear_per_hour", "speed_ki"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"rotor option {name}={getattr(self, name)!r} must be >= 0")
        c = self.client
        housing = c.createCollisionShape(pybullet.GEOM_BOX, halfExtents=(0.25, 0.25, 0.05))
        housing_vis = c.createVisualShape(
            pybullet.GEOM_BOX, halfExtents=(0.25, 0.25, 0.05), rgbaColor=(0.3,) * 3 + (1,)
        )
        disc = c.createCollisionShape(pybullet.GEOM_CYLINDER, radius=RADIUS_M, height=THICKNESS_M)
        disc_vis = c.createVisualShape(
            pybullet.GEOM_CYLINDER, radius=RADIUS_M, length=THICKNESS_M, rgbaColor=(0.7, 0.7, 0.8, 1)
        )
        mark_vis = c.createVisualShape(
            pybullet.GEOM_BOX, halfExtents=(0.09, 0.02, 0.03), rgbaColor=(0.9, 0.1, 0.1, 1)
        )
        self.body = c.createMultiBody(
            baseMass=0.0,
            baseCollisionShapeIndex=housing,
            baseVisualShapeIndex=housing_vis,
            basePosition=self.origin.tolist(),
            linkMasses=[self.mass_kg, 0.0],
            linkCollisionShapeIndices=[disc, -1],
            linkVisualShapeIndices=[disc_vis, mark_vis],
            linkPositions=[(0, 0, 0.15), (0.1, 0, 0.03)],
            linkOrientations=[(0, 0, 0, 1)] * 2,
            linkInertialFramePositions=[(0, 0, 0)] * 2,
            linkInertialFrameOrientations=[(0, 0, 0, 1)] * 2,
            linkParentIndices=[0, 1],
            linkJointTypes=[pybullet.JOINT_REVOLUTE, pybullet.JOINT_FIXED],
            linkJointAxis=[(0, 0, 1), (0, 0, 0)],
        )
        polar = 0.5 * self.mass_kg * RADIUS_M**2
        transverse = self.mass_kg * (3 * RADIUS_M**2 + THICKNESS_M**2) / 12
        c.changeDynamics(self.body, 0, localInertiaDiagonal=(transverse, transverse, polar))
        # PyBullet's default link drag (0.04, velocity-squared) is not a bearing: remove it
        for link in (-1, 0, 1):
            c.changeDynamics(self.body, link, linearDamping=0.0, angularDamping=0.0)
        c.changeDynamics(self.body, 0, maxJointVelocity=1000.0)  # PyBullet clamps at 100 rad/s by default
        self.polar_inertia = polar
        self.links = {"housing": (self.body, -1), "flywheel": (self.body, 0)}
        self.joints = {SHAFT: (self.body, 0)}
        self.joint_type = {SHAFT: pybullet.JOINT_REVOLUTE}
        self.joint_friction = {SHAFT: 0.0}
        self.joint_damping = {SHAFT: 0.0}
        c.setJointMotorControl2(self.body, 0, pybullet.VELOCITY_CONTROL, force=0.0)
        self._torque = 0.0
        self._setpoint = 0.0
        self._integral = 0.0
        self.set_joint_damping(SHAFT, self.viscous)
        self.set_joint_friction(SHAFT, self.coulomb_nm)

    def _specs(self) -> tuple[list[SensorSpec], list[ActuatorSpec]]:
        sensors = [
            SensorSpec("speed", "rad/s", -400.0, 400.0, description="shaft angular velocity"),
            SensorSpec("torque", "N*m", -self.max_torque_nm, self.max_torque_nm, description="motor torque"),
            SensorSpec("vibration", "m/s^2", -100.0, 100.0, description="radial housing acceleration"),
            SensorSpec("bearing_temperature", "K", 250.0, 450.0, description="first-order thermal model"),
            SensorSpec(
                "vibration_rms",
                "m/s^2",
                0.0,
                100.0,
                description=f"RMS of vibration over the last {self.window_ticks} physics ticks",
            ),
        ]
        if self.mode == "speed":
            actuators = [ActuatorSpec("speed_setpoint", "rad/s", -self.max_speed, self.max_speed)]
        else:
            actuators = [ActuatorSpec("motor_torque", "N*m", -self.max_torque_nm, self.max_torque_nm)]
        return sensors, actuators

    def _reset_bodies(self, rng: np.random.Generator) -> None:
        self.client.resetJointState(
            self.body, 0, float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0, 5))
        )
        self.temperature_k = AMBIENT_K + float(rng.uniform(0.0, 2.0))
        self.omega_prev = 0.0
        self.alpha = 0.0
        self.wear_factor = 1.0
        self.set_joint_friction(SHAFT, self.coulomb_nm)
        self.set_joint_damping(SHAFT, self.viscous)
        self._pi = {"integral": 0.0, "setpoint": 100.0, "next_change_s": 0.0, "last_s": 0.0}
        self._integral = 0.0
        self._squares = [0.0] * self.window_ticks  # vibration^2 of past ticks, a ring
        self._squares_at = 0  # where the next one goes
        self._squares_seen = 0
        self._squares_sum = 0.0
        if self.mode == "speed":  # set-point excitation: a tenth of the usual scale (+-9 rad/s)
            self.excitation.scale = np.array([self.max_speed * self.config.excitation * 0.1])

    # --- physics -------------------------------------------------------------------------------
    def set_joint_friction(self, joint: str, coulomb: float) -> None:
        self._coulomb_base = coulomb
        wear = getattr(self, "wear_factor", 1.0)
        super().set_joint_friction(joint, coulomb * wear)
        self.joint_friction[joint] = coulomb  # faults see the nominal value, wear stays separate

    def _wants_substep(self) -> bool:
        return True

    def _command(self, effective: np.ndarray) -> None:
        if self.mode == "speed":  # actuator faults act on the motor torque (see _speed_loop)
            self._setpoint = float(self.action[0])
        else:
            self._torque = float(effective[0])

    def _speed_loop(self, omega: float) -> float:
        """The drive's PI speed loop: motor torque (N*m) for this physics step."""
        setpoint = self._setpoint
        error = setpoint - omega
        # feedforward from the drive's nominal bearing model: faults and wear show as extra torque
        friction = math.copysign(self.coulomb_nm, setpoint) if setpoint else 0.0
        feedforward = friction + self.viscous * setpoint
        wanted = self.speed_kp * error + self._integral + feedforward
        limit = self.max_torque_nm
        torque = min(max(wanted, -limit), limit)
        if torque == wanted or (error > 0) != (wanted > 0):  # anti-windup: conditional integration
            self._integral += self.speed_ki * error * self.dt
        delivered = torque * self._gain0
        return 0.0 if self._dead0 and abs(delivered) < self._dead0 else delivered

    def _vibration(self, theta: float, omega: float) -> float:
        """Radial housing acceleration (m/s^2) now (``alpha``: the last step's)."""
        return (
            self.imbalance_kg_m
            * (omega * omega * math.cos(theta) + self.alpha * math.sin(theta))
            / HOUSING_MASS_KG
        )

    def _remember_vibration(self, vibration: float) -> None:
        """Push this tick's vibration^2 into the RMS window (the sum is re-added exactly each
        time the ring wraps, so rounding never accumulates)."""
        at, squares = self._squares_at, self._squares
        square = vibration * vibration
        self._squares_sum += square - squares[at]
        squares[at] = square
        at += 1
        if at == len(squares):
            at = 0
            self._squares_sum = math.fsum(squares)
        self._squares_at = at
        self._squares_seen += 1

    def _vibration_rms(self, vibration: float) -> float:
        """RMS over the window ending with ``vibration`` (this tick's, not yet remembered)."""
        n = len(self._squares)
        if self._squares_seen < n:
            total, count = self._squares_sum + vibration * vibration, self._squares_seen + 1
        else:  # the oldest remembered square leaves the window as this tick's enters
            total, count = self._squares_sum - self._squares[self._squares_at] + vibration * vibration, n
        return math.sqrt(max(total, 0.0) / count)

    def _substep(self) -> None:
        cid = self.world.client_id
        theta, omega, *_ = pybullet.getJointState(self.body, 0, physicsClientId=cid)
        self._remember_vibration(self._vibration(theta, omega))
        if self.mode == "speed":
            self._torque = self._speed_loop(omega)
        pybullet.setJointMotorControl2(
            self.body, 0, pybullet.TORQUE_CONTROL, force=self._torque, physicsClientId=cid
        )
        self.alpha = (omega - self.omega_prev) / self.dt
        self.omega_prev = omega
        power = self._coulomb_base * self.wear_factor * abs(omega) + self.joint_damping[SHAFT] * omega * omega
        steady = AMBIENT_K + power * THERMAL_RESISTANCE_K_W
        decay = math.exp(-self.dt / (HEAT_CAPACITY_J_K * THERMAL_RESISTANCE_K_W))
        self.temperature_k = steady + (self.temperature_k - steady) * decay
        if self.wear_per_hour and self.world.tick % round(1.0 / self.dt) == 0:
            self.wear_factor = 1.0 + self.wear_per_hour * self.time_s / 3600.0
            super().set_joint_friction(SHAFT, self._coulomb_base * self.wear_factor)
            self.joint_friction[SHAFT] = self._coulomb_base

    def true_state(self) -> np.ndarray:
        theta, omega, *_ = pybullet.getJointState(self.body, 0, physicsClientId=self.world.client_id)
        vib = self._vibration(theta, omega)
        return np.array((omega, self._torque, vib, self.temperature_k, self._vibration_rms(vib)))

    # --- controller ----------------------------------------------------------------------------
    def _scripted(self) -> np.ndarray:
        pi = self._pi
        if self.time_s >= pi["next_change_s"]:
            pi["setpoint"] = float(self.rng_control.uniform(50.0, 250.0))
            pi["next_change_s"] = self.time_s + 30.0
        if self.mode == "speed":
            return np.array([pi["setpoint"]])
        omega = pybullet.getJointState(self.body, 0, physicsClientId=self.world.client_id)[1]
        error = pi["setpoint"] - omega
        elapsed = max(0.0, self.time_s - pi["last_s"])
        pi["last_s"] = self.time_s
        pi["integral"] = float(np.clip(pi["integral"] + error * elapsed, -200.0, 200.0))
        torque = 0.5 * error + 0.05 * pi["integral"] + self._coulomb_base * self.wear_factor
        return np.array([torque])

    def _centring(self) -> np.ndarray:
        if self.mode == "speed":
            return np.array([100.0])
        omega = pybullet.getJointState(self.body, 0, physicsClientId=self.world.client_id)[1]
        return np.array([0.05 * (100.0 - omega)])

    def _save_extra(self) -> dict[str, Any]:
        return {
            "temperature_k": self.temperature_k,
            "omega_prev": self.omega_prev,
            "alpha": self.alpha,
            "wear_factor": self.wear_factor,
            "coulomb_base": self._coulomb_base,
            "pi": dict(self._pi),
            "torque": self._torque,
            "setpoint": self._setpoint,
            "integral": self._integral,
            "squares": (list(self._squares), self._squares_at, self._squares_seen, self._squares_sum),
        }

    def _restore_extra(self, extra: dict[str, Any]) -> None:
        self.temperature_k = extra["temperature_k"]
        self.omega_prev = extra["omega_prev"]
        self.alpha = extra["alpha"]
        self.wear_factor = extra["wear_factor"]
        self._pi = extra["pi"]
        self._torque = extra["torque"]
        self._setpoint = extra["setpoint"]
        self._integral = extra["integral"]
        squares, self._squares_at, self._squares_seen, self._squares_sum = extra["squares"]
        self._squares = list(squares)
        self.set_joint_friction(SHAFT, extra["coulomb_base"])

    def _view(self) -> View:
        o = self.origin
        return View(eye=(o[0] + 0.6, o[1] - 0.6, o[2] + 0.8), target=(o[0], o[1], o[2] + 0.15))
