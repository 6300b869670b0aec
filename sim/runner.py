"""Run scenes on the bus: the loop, its configuration and :func:`run_sim` for embedding.

Topics (``<asset>`` is ``<scene>-<k>``, e.g. ``cartpole-0``):

* ``schema.<asset>.state`` / ``.camera`` / ``.depth``: announced at start and with heartbeats;
* ``obs.<asset>.state``: float64 sensor vectors at ``state_hz`` (the schema's ``rate_hz``);
* ``obs.<asset>.camera``: (H, W, 3) uint8 at ``camera_hz``; ``obs.<asset>.depth`` if enabled;
* ``event.<asset>.fault``: each fault as it begins/ends (params carry ``sim_time_s``);
* ``event.<asset>.error``: rejected bus actions (wrong shape, out of bounds, NaN);
* ``act.<asset>.cmd``: actions the sim obeys with ``controller="bus"`` (other streams under
  ``act.`` are not commands and are ignored);
* ``act.<asset>.applied`` (``publish_actions``, on by default): the action each asset holds from
  this observation on (its controller's command, or the bus command, saturated at the actuator
  bounds; before actuator faults weaken it), published at the state rate just before the
  observation with the same ``t_ns``. A twin that hears it knows the applied actions instead of
  inferring them.

Timestamps (``t_ns``) are simulated time: the wall clock at tick 0 plus ticks / rate (in real
time, taken when the clock starts: the set-up before it, ~10-20 ms, would stamp every reading
early by as much), so fast
runs keep consistent sample spacing. Assets are staggered across ticks (asset k controls and
publishes on ticks where (tick + k) % decimation == 0), spreading work evenly.

Episodes: before the first tick every asset publishes ``Event(category="marker",
name="episode_start", params={"scene", "seed", "controller", ...})`` on ``event.<asset>.marker``
and, when the run stops cleanly (stop event or duration), ``episode_end``; ``twin record``
labels its episodes with them.

Order within a tick: control (the scenes whose turn it is), then publish what is due after the
previous tick (applied actions, then observations), then step the physics; an observation's
controller command is thus known, and published, before the observation itself.

Hot path: in fast mode the loop goes from boundary to boundary (a tick where some asset
controls or publishes) and steps the ticks between in a bare loop (:meth:`World.step_many`);
state vectors go out through :meth:`Publisher.publish_vector`; controllers run through
``scene.act`` (scalar fast paths) and a state read after a step is reused by the control
before the next one. In real time the loop
sleeps until ``spin_s`` before each tick and spins the rest, with the garbage collector off;
``rt_priority`` > 0 asks for SCHED_FIFO (needs CAP_SYS_NICE; refused: logged, run goes on);
otherwise the loop asks for a short scheduler slice (``rt_slice_us``, :mod:`sim.sched`).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bridge import BusConfig, Event, Observation, Publisher, Subscriber
from bridge.config import IMAGE_HWM
from bridge.messages import Action, check_name
from sim.camera import CameraConfig
from sim.clock import Clock, FastClock, RealtimeClock
from sim.controllers import CONTROLLER_MODES, BusActions
from sim.faults import Fault
from sim.registry import make_scene, scene_class
from sim.scene import ActionError, SceneConfig, SimEvent, validate_action
from sim.scenes.base import BaseScene
from sim.sched import latency_hints, raise_priority, restore_priority
from sim.sensors import SensorModel
from sim.world import World, WorldConfig

log = logging.getLogger(__name__)

ASSET_SPACING_M = 25.0
WORLD_SIZE = 16
"""Assets per shared world beyond 16 assets: Bullet's per-step cost grows faster than linearly
with the bodies in one world (100 cartpoles: 377 us a step in one world, ~220 us in worlds of
10-25, 320 us in 100 worlds of one, where per-call overhead dominates)."""


@dataclass(frozen=True, slots=True)
class SimConfig:
    """What ``twin sim`` runs. Rates are per simulated second; ``camera_hz=0`` disables cameras.

    ``assets_per_world``: assets sharing one physics world (0: one world each up to 16 assets,
    worlds of 16 beyond). ``faults``: (asset or "" for every asset, fault) pairs.
    """

    scene: str = "cartpole"
    assets: int = 1
    rate_hz: float = 240.0
    realtime: bool = True
    seed: int = 0
    duration_s: float | None = None
    controller: str = "default"
    control_hz: float = 60.0
    state_hz: float = 60.0
    camera_hz: float = 10.0
    camera_depth: bool = False
    urdf: str | None = None
    assets_per_world: int = 0
    excitation: float = 0.3
    sensors: dict[str, SensorModel] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    faults: tuple[tuple[str, Fault], ...] = ()
    source: str = "sim"
    publish_actions: bool = True
    """Publish each asset's held action on ``act.<asset>.applied`` before each observation."""
    rt_priority: int = 0
    """SCHED_FIFO priority (1-99) for real-time runs; 0: the normal scheduler."""
    rt_slice_us: int = 100
    """Real-time runs on the normal scheduler ask for this EEVDF slice, microseconds (Linux >=
    6.12, unprivileged; :mod:`sim.sched`); 0: the kernel's default slice."""

    def __post_init__(self) -> None:
        scene_class(self.scene)  # UnknownSceneError names the registered scenes
        if not isinstance(self.assets, int) or not 1 <= self.assets <= 10_000:
            raise ValueError(f"SimConfig.assets={self.assets!r} must be an integer in [1, 10000]")
        for name in ("rate_hz", "control_hz", "state_hz"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"SimConfig.{name}={value!r} must be a positive number of Hz")
        for name in ("control_hz", "state_hz", "camera_hz"):
            if getattr(self, name) > self.rate_hz:
                raise ValueError(
                    f"SimConfig.{name}={getattr(self, name)!r} exceeds the physics rate {self.rate_hz}"
                )
        if not (math.isfinite(self.camera_hz) and self.camera_hz >= 0):
            raise ValueError(f"SimConfig.camera_hz={self.camera_hz!r} must be >= 0 (0: no camera)")
        if self.duration_s is not None and not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise ValueError(f"SimConfig.duration_s={self.duration_s!r} must be a positive number of seconds")
        if self.controller not in CONTROLLER_MODES:
            raise ValueError(f"SimConfig.controller={self.controller!r} must be one of {CONTROLLER_MODES}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"SimConfig.seed={self.seed!r} must be an integer >= 0")
        if not isinstance(self.assets_per_world, int) or self.assets_per_world < 0:
            raise ValueError(f"SimConfig.assets_per_world={self.assets_per_world!r} must be an integer >= 0")
        check_name("source", self.source)
        if not isinstance(self.rt_priority, int) or not 0 <= self.rt_priority <= 99:
            raise ValueError(f"SimConfig.rt_priority={self.rt_priority!r} must be an integer in [0, 99]")
        if not isinstance(self.rt_slice_us, int) or not 0 <= self.rt_slice_us <= 100_000:
            raise ValueError(f"SimConfig.rt_slice_us={self.rt_slice_us!r} must be an integer in [0, 100000]")

    def decimation(self, hz: float) -> int:
        return max(1, round(self.rate_hz / hz))

    def asset_names(self) -> list[str]:
        return [f"{self.scene}-{k}" for k in range(self.assets)]


@dataclass(slots=True)
class RunStats:
    """What a run did. Jitter: how late each real-time tick started, milliseconds."""

    ticks: int = 0
    sim_time_s: float = 0.0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    """Process CPU seconds (all threads) during the loop: what the run cost on a machine
    shared with other work, where ``wall_s`` also counts time spent waiting for a CPU."""
    published: int = 0
    dropped: int = 0
    actions: int = 0
    rejected_actions: int = 0
    events: int = 0
    jitter_p50_ms: float = 0.0
    jitter_p99_ms: float = 0.0
    jitter_max_ms: float = 0.0
    streams: dict[str, int] = field(default_factory=dict)
    """Frames published per ``obs.``/``event.`` topic (seq 0..n-1 each; drops included)."""

    @property
    def steps_per_s(self) -> float:
        return self.ticks / self.wall_s if self.wall_s > 0 else 0.0


def build_scenes(config: SimConfig) -> tuple[list[World], list[BaseScene]]:
    """The worlds and scenes a run needs (faults scheduled). Raises on bad scene/URDF/fault."""
    per_world = config.assets_per_world or (1 if config.assets <= 16 else WORLD_SIZE)
    worlds: list[World] = []
    scenes: list[BaseScene] = []
    camera = CameraConfig(rate_hz=config.camera_hz or 1.0, depth=config.camera_depth)
    try:
        for k, asset in enumerate(config.asset_names()):
            if k % per_world == 0:
                worlds.append(World(WorldConfig(rate_hz=config.rate_hz)))
            scene_config = SceneConfig(
                asset=asset,
                seed=config.seed * 100_003 + k,
                rate_hz=config.rate_hz,
                sensors=config.sensors,
                camera=camera,
                controller="none" if config.controller in ("bus", "none") else config.controller,
                excitation=config.excitation,
                urdf=config.urdf,
                options=config.options,
            )
            origin = (0.0, ASSET_SPACING_M * (k % per_world), 0.0)
            scenes.append(make_scene(config.scene, scene_config, world=worlds[-1], origin=origin))
        by_name = {s.asset: s for s in scenes}
        for asset, fault in config.faults:
            if asset and asset not in by_name:
                raise ValueError(
                    f"fault {fault.KIND!r} names asset {asset!r}; assets here: {sorted(by_name)}"
                )
            for scene in [by_name[asset]] if asset else scenes:
                scene.apply_fault(fault)
    except BaseException:
        for world in worlds:
            world.close()
        raise
    return worlds, scenes


CAMERA_HOLD_S = 0.05
"""Camera frames travel on their own socket, unordered with the episode markers: frames are
held back (the simulation goes on) until this long after ``episode_start``, and
``episode_end`` waits until this long after the last frame, so a recorder sees every frame of
an episode between its two markers."""


def _cycle(decimation: int, scenes: list[BaseScene]) -> list[list[BaseScene]]:
    return [[s for k, s in enumerate(scenes) if k % decimation == p] for p in range(decimation)]


class SimRunner:
    """The loop: control, step, publish, pace. Takes its collaborators; builds none of them."""

    def __init__(
        self,
        config: SimConfig,
        worlds: list[World],
        scenes: list[BaseScene],
        publisher: Publisher,
        clock: Clock,
        actions: Subscriber | None = None,
        camera_publisher: Publisher | None = None,
    ) -> None:
        self.config = config
        self.worlds = worlds
        self.scenes = scenes
        self.publisher = publisher
        self.camera_publisher = camera_publisher or publisher
        self.clock = clock
        self.actions = actions
        self.bus_actions = BusActions()
        self.by_asset = {s.asset: s for s in scenes}
        self.stats = RunStats()
        cd, sd = config.decimation(config.control_hz), config.decimation(config.state_hz)
        camd = config.decimation(config.camera_hz) if config.camera_hz > 0 else 0
        self.control_dec, self.state_dec, self.camera_dec = cd, sd, camd
        self.control_period_s = cd / config.rate_hz
        self.control_groups = _cycle(cd, scenes)
        self.state_groups = [[(s, s.schema()) for s in group] for group in _cycle(sd, scenes)]
        self.camera_groups = _cycle(camd, scenes) if camd else []
        self.camera_ids = {s.asset: {c.stream: c.schema_id for c in s.camera_schemas()} for s in scenes}
        self.plan = self._plan()
        self.t0_ns = time.time_ns()
        self._ns_per_tick = 1e9 / config.rate_hz
        self._camera_due = 0.0
        self._camera_held: list[Observation] | None = []
        self._last_frame_at = -math.inf

    def _plan(self) -> list[tuple[list[BaseScene], int]]:
        """The fast loop's schedule, per phase of the control/publish cycle: (the scenes that
        control before stepping this tick, how many ticks from here on can be stepped in one
        bare loop before anything must be controlled or published)."""
        period = math.lcm(self.control_dec, self.state_dec, self.camera_dec or 1)

        def boundary(tick: int) -> bool:  # control before tick, or publish after tick - 1
            return bool(
                self.control_groups[tick % self.control_dec]
                or self.state_groups[tick % self.state_dec]
                or (self.camera_dec and self.camera_groups[tick % self.camera_dec])
            )

        runs = [1] * period
        for phase in range(2 * period - 1, -1, -1):  # twice round: runs wrap past the period
            following = (phase + 1) % period
            runs[phase % period] = 1 if boundary(phase + 1) else 1 + runs[following]
        return [(self.control_groups[p % self.control_dec], runs[p]) for p in range(period)]

    def announce(self) -> None:
        for scene in self.scenes:
            self.publisher.announce(scene.schema())
            if self.camera_dec:
                for schema in scene.camera_schemas():
                    self.camera_publisher.announce(schema)

    def t_ns(self, tick: int) -> int:
        return self.t0_ns + round(tick * self._ns_per_tick)

    # --- episodes ------------------------------------------------------------------------------
    def episode_params(self, scene: BaseScene) -> dict[str, str | int | float | bool]:
        """What ``episode_start`` says about one asset's run (the recorder stores all of it)."""
        cfg = self.config
        params: dict[str, str | int | float | bool] = {
            "scene": cfg.scene,
            "seed": scene.config.seed,
            "controller": cfg.controller,
            "run_seed": cfg.seed,
            "rate_hz": cfg.rate_hz,
            "control_hz": cfg.control_hz,
            "state_hz": cfg.state_hz,
            "camera_hz": cfg.camera_hz,
            "realtime": cfg.realtime,
            "excitation": cfg.excitation,
            "assets": cfg.assets,
            "actuators": ",".join(a.name for a in scene.actuator_specs),
            "faults_scheduled": sum(1 for asset, _ in cfg.faults if asset in ("", scene.asset)),
        }
        if cfg.urdf:
            params["urdf"] = cfg.urdf
        for key, value in sorted(cfg.options.items()):
            if isinstance(value, (str, int, float, bool)):
                params[f"option_{key}"] = value
        return params

    def publish_marker(self, scene: BaseScene, name: str, tick: int, params: dict | None = None) -> None:
        self.publisher.publish(
            Event(
                asset=scene.asset,
                t_ns=self.t_ns(tick),
                category="marker",
                name=name,
                params=params or {"sim_time_s": tick / self.config.rate_hz},
            )
        )
        self.stats.events += 1

    def start_episodes(self) -> None:
        for scene in self.scenes:
            self.publish_marker(scene, "episode_start", 0, self.episode_params(scene))
        self._camera_due = time.perf_counter() + CAMERA_HOLD_S

    def end_episodes(self, tick: int) -> None:
        wait = self._last_frame_at + CAMERA_HOLD_S - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        for scene in self.scenes:
            self.publish_marker(scene, "episode_end", tick)

    # --- actions from the bus ------------------------------------------------------------------
    def poll_actions(self) -> None:
        if self.actions is None:
            return
        for message in self.actions.drain(1000):
            if not isinstance(message, Action) or message.stream != "cmd":
                continue
            scene = self.by_asset.get(message.asset)
            if scene is None:
                log.debug("action for %s ignored: not an asset of this sim", message.asset)
                continue
            try:
                values = validate_action(scene.schema(), message.values)
            except ActionError as exc:
                self.stats.rejected_actions += 1
                self.bus_actions.rejected += 1
                log.warning("rejected action: %s", exc)
                self.publisher.publish(
                    Event(
                        asset=scene.asset,
                        t_ns=self.t_ns(scene.world.tick),
                        category="error",
                        name="bad_action",
                        severity="warning",
                        message=str(exc),
                        params={"rejected_total": self.bus_actions.rejected, "source": message.source},
                    )
                )
                continue
            self.bus_actions.offer(scene.asset, values)
            self.stats.actions += 1

    def publish_events(self, scene: BaseScene, events: list[SimEvent]) -> None:
        for ev in events:
            tick = round(ev.time_s * self.config.rate_hz)
            self.publisher.publish(
                Event(
                    asset=scene.asset,
                    t_ns=self.t_ns(tick),
                    category=ev.category,
                    name=ev.name,
                    severity=ev.severity,
                    message=ev.message,
                    params=ev.params,
                )
            )
            self.stats.events += 1
            log.info("%s at sim t=%.3f s", ev.message, ev.time_s)

    # --- the loop ------------------------------------------------------------------------------
    def tick(self, tick: int) -> None:
        """One physics tick of every world: control, publish what the previous tick made due,
        step."""
        group = self.control_groups[tick % self.control_dec]
        if group:
            self.control(group)
        if tick:
            self.publish_after(tick)
        for world in self.worlds:
            world.step()

    def control(self, group: list[BaseScene]) -> None:
        """The controls due before this tick (``group``: the scenes whose turn it is)."""
        if self.actions is not None:
            self.poll_actions()
        if self.config.controller == "bus":
            for scene in group:
                if scene.events:
                    self.publish_events(scene, scene.pop_events())
                scene.set_action(self.bus_actions.get(scene.asset, len(scene.actuator_specs)))
        else:
            period = self.control_period_s
            for scene in group:
                if scene.events:
                    self.publish_events(scene, scene.pop_events())
                scene.act(period)

    def publish_after(self, now: int) -> None:
        """The observations (and frames) due once ``now`` ticks have been stepped."""
        states = self.state_groups[now % self.state_dec]
        if states:
            t_ns = self.t0_ns + round(now * self._ns_per_tick)
            if self.config.publish_actions:
                for scene, _ in states:  # the publisher stamps its source
                    self.publisher.publish(Action(scene.asset, t_ns, scene.action.copy(), "applied"))
            publish = self.publisher.publish_vector
            for scene, schema in states:
                publish(schema, t_ns, scene.observe())
        if self.camera_dec:
            cameras = self.camera_groups[now % self.camera_dec]
            if cameras:
                self.publish_cameras(cameras, now)

    def publish_cameras(self, scenes: list[BaseScene], now: int) -> None:
        t_ns = self.t_ns(now)
        for scene in scenes:
            rgb, depth = scene.camera()
            ids = self.camera_ids[scene.asset]
            self._publish_frame(Observation(scene.asset, "camera", t_ns, rgb, ids["camera"]))
            if depth is not None:
                self._publish_frame(Observation(scene.asset, "depth", t_ns, depth, ids["depth"]))

    def _publish_frame(self, frame: Observation) -> None:
        if self._camera_held is not None:
            if time.perf_counter() < self._camera_due:
                self._camera_held.append(frame)
                return
            self.release_frames()
        self.camera_publisher.publish(frame)
        self._last_frame_at = time.perf_counter()

    def release_frames(self) -> None:
        """Publish the frames held back since the markers (waiting out the hold if needed)."""
        held, self._camera_held = self._camera_held, None
        if held:
            wait = self._camera_due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            for frame in held:
                self.camera_publisher.publish(frame)
            self._last_frame_at = time.perf_counter()

    def run(self, stop: threading.Event | None = None) -> RunStats:
        """Publish ``episode_start``, run until ``stop``/``duration_s``, publish ``episode_end``."""
        stop = stop or threading.Event()
        cfg = self.config
        end_tick = math.inf if cfg.duration_s is None else round(cfg.duration_s * cfg.rate_hz)
        paced = not isinstance(self.clock, FastClock)
        gc.collect()
        gc.freeze()  # set-up objects leave the collector's view: collections stay short
        gc_was_enabled = gc.isenabled()
        if paced:  # no collection pauses inside ticks: _loop_paced collects in the slack
            gc.disable()
        previous_policy = raise_priority(cfg.rt_priority) if paced and cfg.rt_priority else None
        hints = latency_hints(cfg.rt_slice_us) if paced else contextlib.nullcontext()
        try:
            with hints:
                self.clock.start()
                if paced:  # tick 0 is now: stamps are wall clock at the tick (set-up took ~10-20 ms)
                    self.t0_ns = time.time_ns()
                self.start_episodes()  # stamped at tick 0 too
                started, cpu_started = time.perf_counter(), time.process_time()
                tick = self._loop_paced(stop, end_tick) if paced else self._loop_fast(stop, end_tick)
                wall_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
        finally:
            if previous_policy is not None:
                restore_priority(previous_policy)
            if gc_was_enabled:
                gc.enable()
            gc.unfreeze()
        self.release_frames()
        for scene in self.scenes:
            if scene.events:
                self.publish_events(scene, scene.pop_events())
        self.end_episodes(tick)
        stats = self.stats
        stats.wall_s, stats.cpu_s = wall_s, cpu_s
        stats.ticks = tick
        stats.sim_time_s = tick / cfg.rate_hz
        publishers = [self.publisher]
        if self.camera_publisher is not self.publisher:
            publishers.append(self.camera_publisher)
        stats.published = sum(pub.sent for pub in publishers)
        stats.dropped = sum(pub.dropped for pub in publishers)
        stats.streams = {
            topic: last + 1
            for pub in publishers
            for topic, last in pub.last_seq.items()
            if topic.startswith(("obs.", "event."))
        }
        p50, p99, worst = self.clock.jitter_ms()
        stats.jitter_p50_ms, stats.jitter_p99_ms, stats.jitter_max_ms = p50, p99, worst
        return stats

    def _loop_paced(self, stop: threading.Event, end_tick: float) -> int:
        """One tick per clock tick. The collector is off; it runs after a tick's work, in the
        time left before the next one: young objects every second, everything every minute
        (other threads of the process may make cyclic garbage)."""
        tick, wait, step = 0, self.clock.wait, self.tick
        young, full = max(1, round(self.config.rate_hz)), max(1, round(60 * self.config.rate_hz))
        while tick < end_tick and not (tick & 15 == 0 and stop.is_set()):
            wait(tick)
            step(tick)
            tick += 1
            if tick % young == 0:
                gc.collect(2 if tick % full == 0 else 1)
        if tick:
            self.publish_after(tick)
        return tick

    def _loop_fast(self, stop: threading.Event, end_tick: float) -> int:
        """As fast as possible: at each tick that needs it, control, then publish what is due
        after the previous tick; then step every world up to the next such tick in one bare
        loop (:meth:`World.step_many`). Same order and results as :meth:`tick` per tick."""
        tick, plan, period = 0, self.plan, len(self.plan)
        worlds, control, publish_after = self.worlds, self.control, self.publish_after
        next_check = 0
        while tick < end_tick:
            if tick >= next_check:
                if stop.is_set():
                    break
                next_check = tick + 16
            group, run = plan[tick % period]
            if group:
                control(group)
            if tick:
                publish_after(tick)
            if run > end_tick - tick:
                run = int(end_tick - tick)
            for world in worlds:
                world.step_many(run)
            tick += run
        if tick:
            publish_after(tick)
        return tick


def run_sim(
    config: SimConfig,
    bus_config: BusConfig,
    stop_event: threading.Event | None = None,
    on_ready: Callable[[dict[str, Any]], None] | None = None,
) -> RunStats:
    """Build the scenes, connect to the bus, run until ``stop_event``/``duration_s``; clean up.

    ``on_ready`` receives a summary (assets, topics) once schemas are announced.
    """
    worlds, scenes = build_scenes(config)
    clock: Clock = RealtimeClock(config.rate_hz) if config.realtime else FastClock()
    try:
        with (
            Publisher(bus_config, config.source, role="sim") as publisher,
            Publisher(bus_config, f"{config.source}-camera", role="sim-camera", hwm=IMAGE_HWM) as cam_pub,
        ):
            subscriber = None
            if config.controller == "bus":
                subscriber = Subscriber(
                    bus_config, ("act.",), name=f"{config.source}-actions", require_schema=False
                )
                subscriber.open()
            try:
                runner = SimRunner(config, worlds, scenes, publisher, clock, subscriber, cam_pub)
                runner.announce()
                if on_ready is not None:
                    on_ready(
                        {
                            "event": "sim_ready",
                            "scene": config.scene,
                            "assets": [s.asset for s in scenes],
                            "topics": [f"obs.{s.asset}.state" for s in scenes],
                            "realtime": config.realtime,
                            "rate_hz": config.rate_hz,
                        }
                    )
                stats = runner.run(stop_event)
            finally:
                if subscriber is not None:
                    subscriber.close()
    finally:
        for world in worlds:
            world.close()
    log.info(
        "sim stopped: %d ticks (%.1f s simulated) in %.1f s wall, %d published, %d dropped, "
        "jitter p99 %.3f ms",
        stats.ticks,
        stats.sim_time_s,
        stats.wall_s,
        stats.published,
        stats.dropped,
        stats.jitter_p99_ms,
    )
    return stats
