"""``twin worker`` (the running twin) and ``twin memory search``."""

from __future__ import annotations

import json
import signal
import threading
from typing import Annotated

import typer


def worker_command(
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="Checkpoint path or registry name[:version]; repeatable (default: the registry).",
        ),
    ] = None,
    asset: Annotated[
        list[str] | None,
        typer.Option(
            "--asset",
            help="Serve only this asset, or a name prefix ending in '*' (repeatable): shard a fleet.",
        ),
    ] = None,
    stream: Annotated[str, typer.Option(help="Stream the models read.")] = "state",
    db: Annotated[str | None, typer.Option(help="Database URL [env JUMEAU_DB].")] = None,
    source: Annotated[str, typer.Option(help="Source id on the bus (unique per worker).")] = "worker",
    publish_hz: Annotated[float, typer.Option(help="Predictions per asset per second.")] = 10.0,
    horizons: Annotated[str, typer.Option(help="Control steps ahead, comma separated.")] = "1,5,10,30",
    calibration_steps: Annotated[
        int, typer.Option(help="Nominal steps per asset that calibrate the detector.")
    ] = 900,
    false_alarm_rate: Annotated[
        float, typer.Option(help="Per-step false-alarm rate of the thresholds.")
    ] = 1e-3,
    margin: Annotated[float, typer.Option(help="Thresholds = nominal quantile x margin.")] = 1.5,
    residual_units: Annotated[
        str,
        typer.Option(
            help="Residuals in the model's 'predicted' error (its variance head) or in 'training_std'."
        ),
    ] = "predicted",
    max_future: Annotated[
        float, typer.Option(help="Reject frames this many s ahead of the clock (0: off).")
    ] = 5.0,
    overflow: Annotated[str, typer.Option(help="Full write queue: shed or block.")] = "shed",
    write_queue: Annotated[
        int, typer.Option(help="Rows buffered for the database (while it is slow or away).")
    ] = 20_000,
    db_lock_timeout: Annotated[
        float, typer.Option(help="Seconds a SQLite write waits for a lock before retrying later.")
    ] = 5.0,
    snapshot_every: Annotated[float, typer.Option(help="Seconds between latent snapshots.")] = 1.0,
    keyframe_every: Annotated[float, typer.Option(help="Seconds between memory keyframes.")] = 30.0,
    max_gap: Annotated[
        float, typer.Option(help="A longer silence in a stream refills its window first.")
    ] = 0.2,
    adapt: Annotated[
        bool,
        typer.Option(
            "--adapt/--no-adapt",
            help="Online adaptation: fine-tune on recent nominal data, register, switch when better.",
        ),
    ] = False,
    adapt_every: Annotated[
        float, typer.Option(help="Seconds between adaptation jobs (at most one runs).")
    ] = 60.0,
    adapt_min_steps: Annotated[
        int, typer.Option(help="Nominal control steps an asset needs before a job uses it.")
    ] = 900,
    adapt_buffer: Annotated[int, typer.Option(help="Recent nominal control steps kept per asset.")] = 3600,
    adapt_steps: Annotated[int, typer.Option(help="Optimiser steps per adaptation job.")] = 200,
    adapt_cpu: Annotated[
        float, typer.Option(help="CPU budget of an adaptation job, as a fraction of one core.")
    ] = 0.25,
    adapt_guard: Annotated[
        float, typer.Option(help="Seconds left out before and after every anomaly.")
    ] = 2.0,
    adapt_seed: Annotated[int, typer.Option(help="Seed of the fine-tuning.")] = 0,
    threads: Annotated[int, typer.Option(help="Torch intra-op threads of the live forward passes.")] = 1,
    duration: Annotated[float, typer.Option(help="Stop after this many seconds (0: until Ctrl-C).")] = 0.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Run the twin: predictions, surprise, anomalies and memory for every served asset."""
    from bridge import BusConfig
    from twin.logs import setup_logging
    from twin.store.writer import WriterConfig
    from twin.worker.config import AdaptConfig, DetectorConfig, WorkerConfig
    from twin.worker.service import run_worker

    setup_logging(verbose)
    try:
        config = WorkerConfig(
            bus=BusConfig.from_env(),
            db_url=db,
            models=tuple(model or ()),
            assets=tuple(asset or ()),
            stream=stream,
            source=source,
            horizons_steps=tuple(int(h) for h in horizons.split(",") if h.strip()),
            publish_hz=publish_hz,
            max_future_s=max_future or None,
            max_gap_s=max_gap,
            snapshot_every_s=snapshot_every,
            keyframe_every_s=keyframe_every,
            db_lock_timeout_s=db_lock_timeout,
            torch_threads=threads,
            detector=DetectorConfig(
                calibration_steps=calibration_steps,
                false_alarm_rate=false_alarm_rate,
                margin=margin,
                residual_units=residual_units,
            ),
            writer=WriterConfig(overflow=overflow, queue_size=write_queue),  # type: ignore[arg-type]
            adapt=AdaptConfig(
                every_s=adapt_every,
                min_steps=adapt_min_steps,
                buffer_steps=adapt_buffer,
                train_steps=adapt_steps,
                cpu_fraction=adapt_cpu,
                guard_s=adapt_guard,
                seed=adapt_seed,
            )
            if adapt
            else None,
        )
    except (TypeError, ValueError) as exc:
        typer.echo(f"twin worker: {exc}", err=True)
        raise typer.Exit(2) from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def status(info: dict) -> None:
        typer.echo(json.dumps(info), nl=True)

    stats = run_worker(config, stop, on_ready=status, duration_s=duration or None, on_serving=status)
    store = stats.store
    summary = {
        "event": "worker_stopped",
        "observations": stats.observations,
        "actions": stats.actions,
        "steps": stats.steps,
        "predictions": stats.predictions,
        "anomalies": stats.anomalies,
        "false_alarms": stats.false_alarms,
        "restored": stats.restored,
        "resyncs": stats.resyncs,
        "rejected": dict(stats.rejected),
        "store": {
            "written": dict(store.written),
            "shed": dict(store.shed),
            "lost": store.lost,
            "outages": store.outages,
            "db_errors": store.db_errors,
        },
    }
    if stats.adapt is not None:
        summary["adapt"] = stats.adapt
    typer.echo(json.dumps(summary))


def memory_search_command(
    asset: Annotated[str, typer.Option(help="Asset whose memory to search.")],
    like: Annotated[str, typer.Option(help="A time (t_ns, Unix seconds or ISO 8601): find moments like it.")],
    k: Annotated[int, typer.Option(min=1, help="How many moments.")] = 5,
    db: Annotated[str | None, typer.Option(help="Database URL [env JUMEAU_DB].")] = None,
) -> None:
    """When did this asset look like it did at --like? The most similar remembered moments."""
    from twin.store.engine import make_engine
    from twin.worker.memory import parse_time, search

    try:
        t_ns = parse_time(like)
    except ValueError as exc:
        typer.echo(f"twin memory search: {exc}", err=True)
        raise typer.Exit(2) from None
    engine = make_engine(db)
    try:
        moments = search(engine, asset, t_ns, k)
    finally:
        engine.dispose()
    for m in moments:
        typer.echo(
            json.dumps(
                {
                    "asset": m.asset,
                    "t_ns": m.t_ns,
                    "kind": m.kind,
                    "similarity": m.similarity,
                    "context": m.context,
                }
            )
        )
    if not moments:
        typer.echo(f"no remembered moments of {asset!r} to compare with", err=True)


def calibrate_detector_command(
    model: Annotated[str, typer.Argument(help="Checkpoint path or registry name[:version].")],
    runs: Annotated[int, typer.Option(min=2, help="Nominal reference runs (simulated).")] = 16,
    seconds: Annotated[float, typer.Option(help="Seconds per run (the first ~31 s calibrate).")] = 150.0,
    seed: Annotated[int, typer.Option(help="Seed of the first run (one more per run).")] = 9000,
    per_hour: Annotated[float, typer.Option(help="False alarms an hour the profile aims at.")] = 0.25,
    calibration_steps: Annotated[
        int, typer.Option(help="As the worker's --calibration-steps (the profile holds for that value).")
    ] = 900,
    false_alarm_rate: Annotated[float, typer.Option(help="As the worker's --false-alarm-rate.")] = 1e-3,
    margin: Annotated[float, typer.Option(help="As the worker's --margin.")] = 1.5,
    residual_units: Annotated[
        str,
        typer.Option(help="As the worker's --residual-units."),
    ] = "predicted",
    db: Annotated[str | None, typer.Option(help="Database URL [env JUMEAU_DB].")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Fit and print; write nothing.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Fit the anomaly detector's reference profile on simulated nominal operation and store it
    with the model: per-statistic alarm levels for --per-hour false alarms an hour."""
    from twin.logs import setup_logging
    from twin.store.engine import make_engine
    from twin.worker.calibrate import ReferenceConfig, calibrate_detector
    from twin.worker.config import DetectorConfig

    setup_logging(verbose)
    try:
        detector = DetectorConfig(
            calibration_steps=calibration_steps,
            false_alarm_rate=false_alarm_rate,
            margin=margin,
            residual_units=residual_units,
        )
        reference = ReferenceConfig(runs=runs, seconds=seconds, seed=seed, per_hour=per_hour)
    except ValueError as exc:
        typer.echo(f"twin calibrate-detector: {exc}", err=True)
        raise typer.Exit(2) from None
    engine = make_engine(db)
    try:
        profile, path = calibrate_detector(model, detector, reference, engine, write=not dry_run)
    except (LookupError, ValueError) as exc:
        typer.echo(f"twin calibrate-detector: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    typer.echo(f"{'statistic':<10} {'reference peak':>15} {'scale':>8}")
    for name, scale in profile.scale.items():
        typer.echo(f"{name:<10} {profile.peaks.get(name, float('nan')):>15.3f} {scale:>8.3f}")
    where = "not written (--dry-run)" if dry_run else f"written to {path}"
    typer.echo(f"{profile.hours:.2f} h of nominal reference in {profile.runs} runs; {where}")
