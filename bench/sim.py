"""Simulator benchmark: sim loop throughput vs raw PyBullet stepping, and real-time capacity.

1. Per scene, interleaved in the same run: raw ``pybullet.stepSimulation`` of the scene's world
   in a bare loop (direct call, nothing else) vs the full sim loop in fast mode (controller at
   60 Hz, ``state`` observations published at 30 Hz over a real in-process bus), in physics
   steps per second. Each repeat measures raw, sim, raw again over the same number of steps;
   the ratio is sim over the mean of the two raws, and the reported ratio is the median of
   ``REPEATS`` repeats (this machine is shared: medians tame the noise). Cartpole is also run
   with 30 Hz camera frames, and against raw stepping with its force motor engaged
   (``fast_ratio_vs_actuated_raw``): applying a force costs Bullet ~0.6 us a step, which the
   bare baseline, stepping an unactuated cartpole, does not pay.
2. Real time: N cartpoles in one process (worlds of 16, the runner's default) (240 Hz physics, control and
   ``state`` publishing at 60 Hz, no camera) for a few seconds of wall time, on the normal
   scheduler and with ``rt_priority`` (SCHED_FIFO; reported as refused where not permitted);
   p50/p99/max lateness of tick starts ("jitter"), per-tick work time and whether the loop
   kept up.

Prints a table, then ONE JSON line; also writes bench/results/sim.json. Runs in ~1 minute.
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import sys
import threading
import time

# Run as ``python bench/sim.py``, this file's folder comes first on sys.path and its name would
# shadow the ``sim`` package; drop that folder so ``import sim`` finds the installed package.
_HERE = pathlib.Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if pathlib.Path(p or ".").resolve() != _HERE]

import numpy as np  # noqa: E402
import pybullet  # noqa: E402
import pybullet_data  # noqa: E402

from bridge import Bus, BusConfig, Publisher  # noqa: E402
from sim.clock import FastClock, RealtimeClock  # noqa: E402
from sim.runner import SimConfig, SimRunner, build_scenes  # noqa: E402

FAST_SIM_SECONDS = 40.0
"""Simulated seconds per fast repeat (9600 physics steps)."""
REPEATS = 7
REALTIME_SECONDS = 8.0
REALTIME_ASSETS = 100
RT_PRIORITY = 10


def raw_steps_per_s(config: SimConfig, steps: int, actuated: bool = False) -> float:
    """Bare stepSimulation loop. ``actuated``: with the first actuator held at a small non-zero
    value first (the cartpole's force motor then adds its constraint row to every step, as in
    the sim; with the zero action scenes start with, Bullet skips it)."""
    worlds, scenes = build_scenes(config)
    if actuated:
        for scene in scenes:
            scene.set_action(np.full(len(scene.actuator_specs), 1e-3))
    client_id = worlds[0].client_id
    step = pybullet.stepSimulation
    try:
        start = time.perf_counter()
        for _ in range(steps):
            step(physicsClientId=client_id)
        return steps / (time.perf_counter() - start)
    finally:
        for w in worlds:
            w.close()


def sim_run(config: SimConfig, publisher: Publisher, clock=None, stop_after_s: float | None = None):
    worlds, scenes = build_scenes(config)
    try:
        runner = SimRunner(config, worlds, scenes, publisher, clock or FastClock())
        runner.announce()
        stop = threading.Event()
        timer = threading.Timer(stop_after_s, stop.set) if stop_after_s else None
        if timer:
            timer.start()
        stats = runner.run(stop)
        if timer:
            timer.cancel()
        return stats
    finally:
        for w in worlds:
            w.close()


def fast_ratio(
    config: SimConfig, publisher: Publisher, repeats: int, actuated: bool = False
) -> tuple[float, float, float]:
    """(median raw steps/s, median sim steps/s, median of per-repeat sim/raw ratios)."""
    steps = round(config.duration_s * config.rate_hz)
    raws, sims, ratios = [], [], []
    for _ in range(repeats):
        before = raw_steps_per_s(config, steps, actuated)
        sim = sim_run(config, publisher).steps_per_s
        after = raw_steps_per_s(config, steps, actuated)
        raws.append((before + after) / 2)
        sims.append(sim)
        ratios.append(sim / raws[-1])
    return statistics.median(raws), statistics.median(sims), statistics.median(ratios)


def realtime_run(bus_config: BusConfig, rt_priority: int) -> dict:
    config = SimConfig(
        scene="cartpole",
        assets=REALTIME_ASSETS,  # auto: worlds of 16 (sim.runner.WORLD_SIZE)
        camera_hz=0,
        state_hz=60,
        control_hz=60,
        realtime=True,
        rt_priority=rt_priority,
    )
    clock = RealtimeClock(config.rate_hz)
    load_before = os.getloadavg()[0]
    with Publisher(bus_config, f"bench-rt{rt_priority}") as publisher:
        stats = sim_run(config, publisher, clock, REALTIME_SECONDS)
    kept_up = clock.resyncs == 0 and stats.sim_time_s >= 0.98 * stats.wall_s
    return {
        "rt_priority": rt_priority,
        "kept_up": kept_up,
        "sim_s": round(stats.sim_time_s, 2),
        "wall_s": round(stats.wall_s, 2),
        "p50_jitter_ms": round(stats.jitter_p50_ms, 3),
        "p99_jitter_ms": round(stats.jitter_p99_ms, 3),
        "max_jitter_ms": round(stats.jitter_max_ms, 3),
        "tick_work_ms_p50_p99_max": [round(v, 3) for v in clock.work_ms()],
        "published": stats.published,
        "dropped": stats.dropped,
        "load_avg_1min_before": round(load_before, 2),
    }


def main() -> dict:
    data = pybullet_data.getDataPath()
    fast = dict(camera_hz=0, state_hz=30, realtime=False, duration_s=FAST_SIM_SECONDS)
    cases = [
        ("cartpole", SimConfig(scene="cartpole", **fast), REPEATS),
        ("cartpole+camera30", SimConfig(scene="cartpole", **{**fast, "camera_hz": 30}), 3),
        ("rotor", SimConfig(scene="rotor", **fast), 3),
        ("rotor(speed)", SimConfig(scene="rotor", options={"actuator": "speed"}, **fast), 3),
        ("arm", SimConfig(scene="arm", **{**fast, "duration_s": 5.0}), 3),
        (
            "urdf(panda)",
            SimConfig(scene="urdf", urdf=os.path.join(data, "franka_panda/panda.urdf"), **fast),
            3,
        ),
    ]
    rows = []
    with Bus(BusConfig.local(heartbeat_s=1.0)) as bus, Publisher(bus.config, "bench-sim") as pub:
        for name, config, repeats in cases:
            rows.append((name, *fast_ratio(config, pub, repeats)))
        actuated = fast_ratio(cases[0][1], pub, REPEATS, actuated=True)
        realtime = [realtime_run(bus.config, 0), realtime_run(bus.config, RT_PRIORITY)]

    print(f"{'scene':<20}{'raw steps/s':>14}{'sim steps/s':>14}{'ratio':>8}")
    for name, raw, sim, ratio in [*rows, ("cartpole vs actuated raw", *actuated)]:
        print(f"{name:<20}{raw:>14,.0f}{sim:>14,.0f}{ratio:>8.2f}")
    for rt in realtime:
        policy = f"SCHED_FIFO {rt['rt_priority']}" if rt["rt_priority"] else "normal scheduler"
        print(f"\nreal time ({policy}): {REALTIME_ASSETS} cartpoles, 240 Hz, 60 Hz state: {rt}")
    normal, fifo = realtime
    result = {
        "fast_ratio_vs_raw": round(rows[0][3], 3),
        "fast_ratio_vs_raw_with_camera": round(rows[1][3], 3),
        "fast_ratio_vs_actuated_raw": round(actuated[2], 3),
        "actuated_raw_steps_per_s": round(actuated[0]),
        "fast_ratio_by_scene": {name: round(ratio, 3) for name, _, _, ratio in rows},
        "raw_steps_per_s": {name: round(raw) for name, raw, _, _ in rows},
        "sim_steps_per_s": {name: round(sim) for name, _, sim, _ in rows},
        "fast_repeats": REPEATS,
        "realtime_assets": REALTIME_ASSETS if normal["kept_up"] else 0,
        "realtime_kept_up": normal["kept_up"],
        "p99_jitter_ms": normal["p99_jitter_ms"],
        "max_jitter_ms": normal["max_jitter_ms"],
        "realtime_dropped": normal["dropped"],
        "realtime_normal_scheduler": normal,
        "realtime_sched_fifo": fifo,
        "cpu_count": os.cpu_count(),
        "load_avg_1min_at_end": round(os.getloadavg()[0], 2),
    }
    out = pathlib.Path(__file__).parent / "results" / "sim.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
