"""The ``twin`` command: one entry point, one subcommand per service or job.

Subcommands import their modules lazily, so ``twin --help`` is fast and importing this module
has no side effects.
"""

from __future__ import annotations

import json
import signal
import threading
from typing import Annotated

import typer

app = typer.Typer(
    name="twin",
    help="Jumeau: a digital twin whose brain is a learned world model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]


def _stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM (install before announcing readiness: no race)."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


@app.command()
def bus(
    pub: Annotated[str | None, typer.Option(help="Publisher endpoint [env JUMEAU_BUS_PUB].")] = None,
    sub: Annotated[str | None, typer.Option(help="Subscriber endpoint [env JUMEAU_BUS_SUB].")] = None,
    control: Annotated[str | None, typer.Option(help="Control endpoint [env JUMEAU_BUS_CONTROL].")] = None,
    stats: Annotated[bool, typer.Option("--stats", help="Log per-stream rates, gaps, rejects.")] = False,
    stats_interval: Annotated[float, typer.Option(help="Seconds between stats reports.")] = 2.0,
    verbose: Verbose = False,
) -> None:
    """Run the bus: XSUB/XPUB proxy, schema cache and control endpoint."""
    from bridge import Bus, BusConfig
    from bridge.monitor import BusMonitor
    from twin.logs import setup_logging

    setup_logging(verbose)
    config = BusConfig.from_env(pub_endpoint=pub, sub_endpoint=sub, control_endpoint=control)
    stop = _stop_on_signals()
    try:
        running = Bus(config)
        resolved = running.start()
    except OSError as exc:
        typer.echo(f"twin bus: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        json.dumps(
            {
                "event": "bus_ready",
                "pub": resolved.pub_endpoint,
                "sub": resolved.sub_endpoint,
                "control": resolved.control_endpoint,
            }
        ),
    )
    monitor = BusMonitor(resolved, interval_s=stats_interval).start() if stats else None
    try:
        while not stop.wait(0.5):
            pass
    finally:
        if monitor is not None:
            monitor.stop()
        running.stop()


@app.command()
def up(
    scene: Annotated[
        str, typer.Option(help="'cell' (arm, rotor, two cart-poles) or one scene (cartpole, rotor, arm).")
    ] = "cell",
    assets: Annotated[int, typer.Option(min=1, help="How many simulated assets (one scene only).")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the simulation.")] = 1,
    duration: Annotated[float, typer.Option(min=0, help="Stop after this many seconds (0: Ctrl-C).")] = 0.0,
    pub: Annotated[str | None, typer.Option(help="Bus publisher endpoint (port 0: any free).")] = None,
    sub: Annotated[str | None, typer.Option(help="Bus subscriber endpoint.")] = None,
    control: Annotated[str | None, typer.Option(help="Bus control endpoint.")] = None,
    ui: Annotated[bool, typer.Option("--ui/--no-ui", help="Serve the dashboard (twin ui).")] = True,
    ui_port: Annotated[
        int | None, typer.Option(help="Dashboard port (0: any free) [env JUMEAU_UI_PORT, else 8501 or free].")
    ] = None,
    record: Annotated[bool, typer.Option("--record/--no-record", help="Record into the database.")] = True,
    worker: Annotated[
        bool, typer.Option("--worker/--no-worker", help="Run the twin worker (trains missing models first).")
    ] = True,
    training: Annotated[
        str, typer.Option(help="Preset for models missing from the registry: quick, or tiny (tests).")
    ] = "quick",
    fault_at: Annotated[
        float, typer.Option(min=0, help="Sim time (s) of the cell's scripted fault (0: none).")
    ] = 60.0,
    verbose: Verbose = False,
) -> None:
    """Run the main job: bus, simulated assets, recorder, worker and dashboard, with a live status line."""
    from bridge import BusConfig
    from twin.logs import setup_logging
    from twin.up import UpConfig, run_up

    setup_logging(verbose)
    bus_config = BusConfig.from_env(pub_endpoint=pub, sub_endpoint=sub, control_endpoint=control)
    try:
        config = UpConfig(
            scene=scene,
            assets=assets,
            seed=seed,
            duration_s=duration,
            bus=bus_config,
            ui=ui,
            ui_port=ui_port,
            record=record,
            worker=worker,
            training=training,
            fault_at_s=fault_at,
        )
    except ValueError as exc:
        typer.echo(f"twin up: {exc}", err=True)
        raise typer.Exit(2) from None
    code = run_up(config)
    raise typer.Exit(code)


@app.command("stats")
def stats_command(
    interval: Annotated[float, typer.Option(help="Seconds between reports.")] = 2.0,
    count: Annotated[int, typer.Option(help="Reports before exiting (0: until Ctrl-C).")] = 0,
) -> None:
    """Watch a running bus: per-stream rates, sequence gaps and rejects."""
    from bridge import BusConfig
    from bridge.monitor import BusMonitor
    from bridge.stats import format_stats
    from twin.logs import setup_logging

    setup_logging()
    done = threading.Event()
    reports = 0

    def report(snapshot: object) -> None:
        nonlocal reports
        typer.echo(format_stats(snapshot) + "\n")  # type: ignore[arg-type]
        reports += 1
        if count and reports >= count:
            done.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    with BusMonitor(BusConfig.from_env(), interval_s=interval, source="twin-stats", report=report):
        while not done.wait(0.2):
            pass


from sim.cli import sim_command  # noqa: E402

app.command("sim")(sim_command)

from ui.cli import ui_command  # noqa: E402

app.command("ui")(ui_command)

from twin.store.cli import dataset_export_command, db_upgrade_command, record_command  # noqa: E402

app.command("record")(record_command)
db_app = typer.Typer(help="The SQL store: migrations.", no_args_is_help=True)
db_app.command("upgrade")(db_upgrade_command)
app.add_typer(db_app, name="db")
dataset_app = typer.Typer(help="Recorded episodes as training data.", no_args_is_help=True)
dataset_app.command("export")(dataset_export_command)
app.add_typer(dataset_app, name="dataset")


from twin.worker.cli import calibrate_detector_command, memory_search_command, worker_command  # noqa: E402

app.command("worker")(worker_command)
app.command("calibrate-detector")(calibrate_detector_command)
memory_app = typer.Typer(help="Episodic memory of the running twin.", no_args_is_help=True)
memory_app.command("search")(memory_search_command)
app.add_typer(memory_app, name="memory")


from twin.model.cli import eval_command, train_command  # noqa: E402

app.command("train")(train_command)
app.command("eval")(eval_command)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    app(args=argv, prog_name="twin")


if __name__ == "__main__":
    main()
