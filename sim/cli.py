"""``twin sim``: run simulated assets on the bus (registered by twin/cli.py as a subcommand)."""

from __future__ import annotations

import json
import signal
import threading
from typing import Annotated

import typer

from sim.controllers import CONTROLLER_MODES


def _parse_faults(specs: list[str]) -> tuple:
    from sim.faults import FaultError, fault_from_dict

    out = []
    for spec in specs:
        try:
            data = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise FaultError(f"--fault {spec!r} is not JSON ({exc.msg})") from None
        if not isinstance(data, dict):
            raise FaultError(f"--fault {spec!r} must be a JSON object")
        asset = str(data.pop("asset", ""))
        out.append((asset, fault_from_dict(data)))
    return tuple(out)


def _parse_options(specs: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` pairs; a VALUE that parses as JSON is taken as such (numbers, true), else text."""
    options: dict[str, object] = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--option {spec!r} must look like KEY=VALUE, e.g. actuator=speed")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


def sim_command(
    scene: Annotated[str, typer.Option(help="Scene: cartpole, rotor, arm or urdf.")] = "cartpole",
    assets: Annotated[int, typer.Option(help="How many assets (<scene>-0, <scene>-1, ...).")] = 1,
    rate: Annotated[float, typer.Option(help="Physics rate, Hz.")] = 240.0,
    realtime: Annotated[
        bool, typer.Option("--realtime/--fast", help="Pace to the wall clock, or run flat out.")
    ] = True,
    seed: Annotated[int, typer.Option(help="Seed of initial states, noise and controllers.")] = 0,
    duration: Annotated[float | None, typer.Option(help="Stop after this many simulated seconds.")] = None,
    urdf: Annotated[str | None, typer.Option(help="URDF path (scene urdf).")] = None,
    controller: Annotated[str, typer.Option(help=f"One of {', '.join(CONTROLLER_MODES)}.")] = "default",
    control_hz: Annotated[float, typer.Option(help="Controller rate, Hz.")] = 60.0,
    state_hz: Annotated[float, typer.Option(help="Rate of obs.<asset>.state, Hz.")] = 60.0,
    camera_hz: Annotated[float, typer.Option(help="Rate of obs.<asset>.camera, Hz (0: off).")] = 10.0,
    depth: Annotated[
        bool, typer.Option("--depth", help="Also publish obs.<asset>.depth (float32 m).")
    ] = False,
    assets_per_world: Annotated[int, typer.Option(help="Assets sharing one physics world (0: auto).")] = 0,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            help='Fault as JSON, repeatable: \'{"kind":"payload","link":"pole","mass_kg":0.2,"at_s":5}\''
        ),
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(help="Scene option KEY=VALUE, repeatable: --option actuator=speed (rotor)."),
    ] = None,
    rt_priority: Annotated[
        int, typer.Option(help="SCHED_FIFO priority 1-99 for --realtime (0: normal scheduler).")
    ] = 0,
    rt_slice_us: Annotated[
        int,
        typer.Option(help="Scheduler slice to ask for in --realtime, us (Linux >= 6.12; 0: default)."),
    ] = 100,
    source: Annotated[str, typer.Option(help="Source id on the bus (unique per sim process).")] = "sim",
    publish_actions: Annotated[
        bool,
        typer.Option(help="Publish each asset's held action on act.<asset>.applied before each observation."),
    ] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Simulate assets in PyBullet and publish them on the bus (obs.<asset>.state/camera)."""
    from bridge import BusConfig
    from sim.runner import SimConfig, run_sim
    from twin.logs import setup_logging

    setup_logging(verbose)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        config = SimConfig(
            scene=scene,
            assets=assets,
            rate_hz=rate,
            realtime=realtime,
            seed=seed,
            duration_s=duration,
            controller=controller,
            control_hz=control_hz,
            state_hz=state_hz,
            camera_hz=camera_hz,
            camera_depth=depth,
            urdf=urdf,
            assets_per_world=assets_per_world,
            faults=_parse_faults(fault or []),
            options=_parse_options(option or []),
            rt_priority=rt_priority,
            rt_slice_us=rt_slice_us,
            source=source,
            publish_actions=publish_actions,
        )
        stats = run_sim(
            config, BusConfig.from_env(), stop, on_ready=lambda info: typer.echo(json.dumps(info))
        )
    except (ValueError, TypeError, OSError) as exc:
        typer.echo(f"twin sim: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        json.dumps(
            {
                "event": "sim_stopped",
                "ticks": stats.ticks,
                "sim_time_s": stats.sim_time_s,
                "wall_s": round(stats.wall_s, 3),
                "steps_per_s": round(stats.steps_per_s, 1),
                "published": stats.published,
                "dropped": stats.dropped,
                "rejected_actions": stats.rejected_actions,
                "jitter_p99_ms": round(stats.jitter_p99_ms, 4),
            }
        )
    )
