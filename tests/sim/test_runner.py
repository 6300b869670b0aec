"""The runner's hot paths change no result: quiet-tick stepping, scalar controllers, markers."""

from __future__ import annotations

import numpy as np
import pytest

from bridge import Event, Observation
from sim import faults as fl
from sim.clock import FastClock
from sim.controllers import Excitation
from sim.registry import make_scene
from sim.runner import SimConfig, SimRunner, build_scenes
from sim.scene import SceneConfig


class CapturePublisher:
    """Stands in for bridge.Publisher: keeps what is published, numbers it per topic."""

    def __init__(self) -> None:
        self.messages: list = []
        self.sent = 0
        self.dropped = 0
        self._seq: dict[str, int] = {}

    def publish(self, message) -> bool:
        self._seq[message.topic] = self._seq.get(message.topic, -1) + 1
        self.messages.append(message)
        self.sent += 1
        return True

    def publish_vector(self, schema, t_ns: int, values) -> bool:
        return self.publish(Observation(schema.asset, schema.stream, t_ns, values, schema.schema_id))

    def announce(self, schema) -> None:
        self.publish(schema)

    @property
    def last_seq(self) -> dict[str, int]:
        return dict(self._seq)


class UnpacedClock:
    """Paced-loop code path (one tick at a time) without waiting: tests the per-tick loop."""

    def start(self) -> None:
        pass

    def wait(self, tick: int) -> None:
        pass

    def jitter_ms(self) -> tuple[float, float, float]:
        return 0.0, 0.0, 0.0


def run(config: SimConfig, clock) -> tuple[list, object]:
    worlds, scenes = build_scenes(config)
    try:
        pub = CapturePublisher()
        stats = SimRunner(config, worlds, scenes, pub, clock).run()
        return pub.messages, stats
    finally:
        for world in worlds:
            world.close()


def samples(messages: list) -> list[tuple[str, int, bytes]]:
    """(topic, ns since the run's start, value bytes) of every observation."""
    t0 = next(m.t_ns for m in messages if isinstance(m, Event) and m.name == "episode_start")
    return [(m.topic, m.t_ns - t0, m.values.tobytes()) for m in messages if isinstance(m, Observation)]


SENSOR = {"cartpole": "pole_angle", "rotor": "speed"}


@pytest.mark.parametrize(("scene", "ticks"), [("cartpole", 720), ("rotor", 720), ("cartpole", 723)])
def test_fast_loop_equals_the_tick_by_tick_loop(scene, ticks):
    """Also when the run ends between two publishing ticks (723 = 90 x 8 + 3)."""
    config = SimConfig(
        scene=scene,
        assets=3,
        assets_per_world=3,
        realtime=False,
        duration_s=ticks / 240,
        state_hz=30,
        camera_hz=0,
        faults=((f"{scene}-1", fl.SensorBias(sensor=SENSOR[scene], bias=0.1, at_s=1.0)),),
    )
    fast, fast_stats = run(config, FastClock())
    slow, _ = run(config, UnpacedClock())
    obs = samples(fast)
    assert obs == samples(slow)
    # asset k publishes once k + 8 j ticks have been stepped (staggered), j >= 0 (k = 0: j >= 1)
    assert len(obs) == sum(len(range(k or 8, ticks + 1, 8)) for k in range(3))
    assert fast_stats.ticks == ticks and fast_stats.streams[f"obs.{scene}-0.state"] == 90
    assert fast_stats.cpu_s > 0  # process CPU time of the loop, beside its wall time


def test_scalar_controller_gives_the_generic_controllers_actions():
    period = 4 / 240
    with (
        make_scene("cartpole", SceneConfig(seed=7)) as fast,
        make_scene("cartpole", SceneConfig(seed=7)) as generic,
    ):
        for k in range(600):
            if k % 4 == 0:
                fast.observe()  # a state read at this tick, reused by act()
                fast.act(period)
                generic.set_action(generic.control(period))
                assert fast.action[0] == generic.action[0]
            fast.world.step()
            generic.world.step()
        assert np.array_equal(fast.true_state(), generic.true_state())


def test_excitation_has_its_correlation_time_at_any_control_rate():
    from bridge import ActuatorSpec

    spec = (ActuatorSpec("u", "N", -1.0, 1.0),)
    correlations = []
    for period in (1 / 240, 1 / 30):
        ex = Excitation.for_actuators(spec, 1.0, 1 / 240, tau_s=0.5)
        rng = np.random.default_rng(0)
        x = np.array([ex.sample_scalar(rng, period) for _ in range(40_000)])
        lag = round(0.5 / period)  # one correlation time
        correlations.append(np.corrcoef(x[:-lag], x[lag:])[0, 1])
    assert correlations == pytest.approx([np.exp(-1)] * 2, abs=0.05)


def test_markers_open_and_close_every_episode_with_its_metadata():
    options = {"actuator": "speed"}
    config = SimConfig(
        scene="rotor", assets=2, realtime=False, duration_s=1.0, camera_hz=5, seed=4, options=options
    )
    messages, stats = run(config, FastClock())
    events = [m for m in messages if isinstance(m, Event)]
    first = {m.asset: k for k, m in reversed(list(enumerate(messages))) if isinstance(m, Observation)}
    for k, asset in enumerate(("rotor-0", "rotor-1")):
        mine = [e for e in events if e.asset == asset]
        assert [e.name for e in mine] == ["episode_start", "episode_end"]
        start, end = mine
        assert messages.index(start) < first[asset]  # the marker precedes every frame
        assert start.params["scene"] == "rotor" and start.params["controller"] == "default"
        assert start.params["seed"] == 4 * 100_003 + k and start.params["run_seed"] == 4
        assert start.params["actuators"] == "speed_setpoint" and start.params["option_actuator"] == "speed"
        assert end.t_ns > start.t_ns and end.params["sim_time_s"] == pytest.approx(1.0)
    assert stats.streams["event.rotor-0.marker"] == 2
