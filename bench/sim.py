"""Simulator benchmark: sim loop throughput vs raw PyBullet stepping, and real-time capacity.

    python bench/sim.py            # < 1 minute; table, then ONE JSON line (bench/results/sim.json)

The bus runs in its own process (as ``twin bus`` does), so this process holds only the sim.

1. Fast mode (as fast as possible), per scene, interleaved in the same run: the full sim loop
   (controller at 60 Hz, ``state`` published at 30 Hz over the real bus) against raw PyBullet
   loops over the same scene's world, in physics steps per second. Cartpole gets three raw
   loops, strictest last:

   * ``raw`` (the issue's baseline, "cartpole ~160k/s with force and state read"): every step,
     a cart force by TORQUE_CONTROL (a +-1 N, 2 s sine from a precomputed table, so the cart
     stays clear of its rail ends), ``stepSimulation`` and a ``getJointStates`` read; direct
     ``pybullet`` calls, no wrapper. ``fast_ratio_vs_raw`` is the sim against this loop.
   * ``actuated bare``: only ``stepSimulation``, with the sim's force motor engaged (Bullet's
     own cost of applying a force), ``fast_ratio_vs_actuated_bare``;
   * ``bare``: only ``stepSimulation`` of the unactuated scene, ``fast_ratio_vs_bare``: the
     ceiling no loop that applies a force can reach.

   Other scenes are compared with ``bare`` only. Each repeat runs the raw loops, the sim, the
   raw loops again (same step count); a ratio is the sim over the mean of its two raws and the
   reported ratio is the median over repeats (the machine is shared: medians tame noise).
   The ``*_cpu_time`` ratios divide steps by process CPU seconds instead of wall seconds (all
   threads: the sim's ZeroMQ I/O thread counts): time spent waiting for a CPU taken by other
   work drops out, so they vary less with the machine's load.
2. Real time: 100 cartpoles in one process (worlds of 16, 240 Hz physics, control and
   ``state`` at 60 Hz, no camera) for 20 s of wall time on the normal scheduler (the default
   of ``twin sim --realtime``: short scheduler slice, :mod:`sim.sched`) and for 8 s with
   SCHED_FIFO (``--rt-priority``; reported as refused where not permitted). Jitter is the lateness of tick
   starts (p50/p99/max); also the per-tick work time and whether the loop kept up.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import pathlib
import statistics
import sys
import threading
import time
from multiprocessing.connection import Connection

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
REALTIME_SECONDS = {0: 20.0, 10: 8.0}
"""Wall seconds per real-time run, by rt_priority: 20 s (4800 ticks) on the normal scheduler,
so one stall of another process (tens of ms, ~10 late ticks) does not decide the p99 alone."""
REALTIME_ASSETS = 100
RT_PRIORITY = 10
JITTER_TARGET_MS = 2.0
FAST_TARGET = 0.7


def _serve_bus(conn: Connection) -> None:
    """Child process: a bus on free loopback ports until the parent says stop."""
    with Bus(BusConfig.local(heartbeat_s=1.0)) as bus:
        conn.send(bus.config)
        conn.recv()


def raw_steps_per_s(config: SimConfig, steps: int, loop: str) -> tuple[float, float]:
    """A raw PyBullet loop over the scene's first world: ``bare``, ``actuated`` or ``force_read``
    (see the module docstring). (steps per wall second, steps per process CPU second)."""
    worlds, scenes = build_scenes(config)
    cid, step = worlds[0].client_id, pybullet.stepSimulation
    try:
        if loop == "actuated":  # the sim's force motor with a non-zero force (0 N: Bullet skips it)
            for scene in scenes:
                scene.set_action(np.full(len(scene.actuator_specs), 1e-3))
        if loop != "force_read":
            start, cpu = time.perf_counter(), time.process_time()
            for _ in range(steps):
                step(physicsClientId=cid)
            return steps / (time.perf_counter() - start), steps / (time.process_time() - cpu)
        body = scenes[0].body  # cartpole: joint 0 the rail, 1 the hinge
        motor, read, torque = pybullet.setJointMotorControl2, pybullet.getJointStates, pybullet.TORQUE_CONTROL
        forces = [math.sin(2 * math.pi * k / 480) for k in range(480)]  # 1 N, 2 s period
        joints = (0, 1)
        start, cpu = time.perf_counter(), time.process_time()
        for k in range(steps):
            motor(body, 0, torque, force=forces[k % 480], physicsClientId=cid)
            step(physicsClientId=cid)
            read(body, joints, physicsClientId=cid)
        return steps / (time.perf_counter() - start), steps / (time.process_time() - cpu)
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


def fast_ratios(
    config: SimConfig, publisher: Publisher, repeats: int, loops: tuple[str, ...]
) -> dict[str, tuple[float, float, float, float]]:
    """Per raw loop: (median raw steps/s, median sim steps/s, median per-repeat sim/raw, the
    same ratio from steps per process CPU second)."""
    steps = round(config.duration_s * config.rate_hz)
    raws: dict[str, list[float]] = {loop: [] for loop in loops}
    ratios: dict[str, list[float]] = {loop: [] for loop in loops}
    cpu_ratios: dict[str, list[float]] = {loop: [] for loop in loops}
    sims = []
    for _ in range(repeats):
        before = {loop: raw_steps_per_s(config, steps, loop) for loop in loops}
        stats = sim_run(config, publisher)
        sims.append(stats.steps_per_s)
        sim_cpu = stats.ticks / stats.cpu_s
        for loop in loops:
            after = raw_steps_per_s(config, steps, loop)
            raws[loop].append((before[loop][0] + after[0]) / 2)
            ratios[loop].append(sims[-1] / raws[loop][-1])
            cpu_ratios[loop].append(sim_cpu / ((before[loop][1] + after[1]) / 2))
    sim = statistics.median(sims)
    return {
        loop: (
            statistics.median(raws[loop]),
            sim,
            statistics.median(ratios[loop]),
            statistics.median(cpu_ratios[loop]),
        )
        for loop in loops
    }


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
        stats = sim_run(config, publisher, clock, REALTIME_SECONDS[rt_priority])
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
        "process_cpu_fraction": round(stats.cpu_s / max(stats.wall_s, 1e-9), 3),
        "published": stats.published,
        "dropped": stats.dropped,
        "load_avg_1min_before": round(load_before, 2),
    }


def main() -> dict:
    started = time.perf_counter()
    data = pybullet_data.getDataPath()
    fast = dict(camera_hz=0, state_hz=30, realtime=False, duration_s=FAST_SIM_SECONDS)
    cartpole = SimConfig(scene="cartpole", **fast)
    others = [
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
    load_start = os.getloadavg()[0]
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    bus_process = ctx.Process(target=_serve_bus, args=(child,), name="bench-bus", daemon=True)
    bus_process.start()
    try:
        bus_config = parent.recv()
        with Publisher(bus_config, "bench-sim") as pub:
            cart = fast_ratios(cartpole, pub, REPEATS, ("force_read", "actuated", "bare"))
            rows = [(name, *fast_ratios(c, pub, n, ("bare",))["bare"][:3]) for name, c, n in others]
        realtime = [realtime_run(bus_config, 0), realtime_run(bus_config, RT_PRIORITY)]
    finally:
        parent.send("stop")
        bus_process.join(timeout=10)

    print(f"{'scene':<34}{'raw steps/s':>14}{'sim steps/s':>14}{'ratio':>8}")
    table = [
        ("cartpole vs raw (force+read)", *cart["force_read"][:3]),
        ("cartpole vs actuated bare step", *cart["actuated"][:3]),
        ("cartpole vs bare step", *cart["bare"][:3]),
        *[(f"{name} vs bare step", raw, sim, ratio) for name, raw, sim, ratio in rows],
    ]
    for name, raw, sim, ratio in table:
        print(f"{name:<34}{raw:>14,.0f}{sim:>14,.0f}{ratio:>8.2f}")
    print(
        "cartpole ratios from CPU time (load-robust): "
        + ", ".join(f"vs {loop} {cart[loop][3]:.2f}" for loop in ("force_read", "actuated", "bare"))
    )
    print(f"\nreal time: {REALTIME_ASSETS} cartpoles in one process, 240 Hz physics, 60 Hz control+state")
    header = ("kept up", "p50 ms", "p99 ms", "max ms")
    print(f"{'scheduler':<22}" + "".join(f"{h:>8}" for h in header) + f"{'work p50/p99 ms':>18}{'load':>6}")
    for rt in realtime:
        policy = f"SCHED_FIFO {rt['rt_priority']}" if rt["rt_priority"] else "normal (slice hint)"
        work = rt["tick_work_ms_p50_p99_max"]
        print(
            f"{policy:<22}{rt['kept_up']!s:>8}{rt['p50_jitter_ms']:>8.3f}{rt['p99_jitter_ms']:>8.3f}"
            f"{rt['max_jitter_ms']:>8.3f}{f'{work[0]:.2f}/{work[1]:.2f}':>18}{rt['load_avg_1min_before']:>6.2f}"
        )
    normal, fifo = realtime
    result = {
        "fast_ratio_vs_raw": round(cart["force_read"][2], 3),
        "fast_target_met": cart["force_read"][2] >= FAST_TARGET,
        "fast_ratio_vs_actuated_bare": round(cart["actuated"][2], 3),
        "fast_ratio_vs_bare": round(cart["bare"][2], 3),
        "fast_ratio_vs_raw_cpu_time": round(cart["force_read"][3], 3),
        "fast_ratio_vs_actuated_bare_cpu_time": round(cart["actuated"][3], 3),
        "fast_ratio_vs_bare_cpu_time": round(cart["bare"][3], 3),
        "raw_force_read_steps_per_s": round(cart["force_read"][0]),
        "actuated_bare_steps_per_s": round(cart["actuated"][0]),
        "fast_ratio_vs_bare_by_scene": {
            "cartpole": round(cart["bare"][2], 3),
            **{name: round(ratio, 3) for name, _, _, ratio in rows},
        },
        "bare_steps_per_s": {"cartpole": round(cart["bare"][0]), **{n: round(r) for n, r, _, _ in rows}},
        "sim_steps_per_s": {"cartpole": round(cart["bare"][1]), **{n: round(s) for n, _, s, _ in rows}},
        "fast_repeats": REPEATS,
        "realtime_assets": REALTIME_ASSETS if normal["kept_up"] else 0,
        "p99_jitter_ms": normal["p99_jitter_ms"],
        "realtime_target_met": normal["kept_up"] and normal["p99_jitter_ms"] < JITTER_TARGET_MS,
        "max_jitter_ms": normal["max_jitter_ms"],
        "realtime_assets_sched_fifo": REALTIME_ASSETS if fifo["kept_up"] else 0,
        "p99_jitter_ms_sched_fifo": fifo["p99_jitter_ms"],
        "realtime_normal_scheduler": normal,
        "realtime_sched_fifo": fifo,
        "cpu_count": os.cpu_count(),
        "load_avg_1min_at_start": round(load_start, 2),
        "load_avg_1min_at_end": round(os.getloadavg()[0], 2),
        "bench_wall_s": round(time.perf_counter() - started, 1),
    }
    out = _HERE / "results" / "sim.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
