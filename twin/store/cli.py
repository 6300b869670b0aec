"""Command functions of ``twin record``, ``twin db upgrade`` and ``twin dataset export``.

Registered in :mod:`twin.cli`. Only ``typer`` is imported at module level; the store, the bus and
numpy load when a command runs, so ``twin --help`` stays fast.
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

DbUrl = Annotated[
    str | None, typer.Option("--db", help="Database URL [env JUMEAU_DB; default SQLite in JUMEAU_HOME].")
]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]


def db_upgrade_command(
    db: DbUrl = None,
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
    verbose: Verbose = False,
) -> None:
    """Create or migrate the database to the latest schema."""
    from sqlalchemy.exc import SQLAlchemyError

    from twin.logs import setup_logging
    from twin.store.engine import describe, make_engine
    from twin.store.migrate import upgrade

    setup_logging(verbose)
    engine = make_engine(db)
    try:
        now = upgrade(engine, revision)
    except SQLAlchemyError as exc:
        typer.echo(f"twin db upgrade: {describe(engine)}: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    typer.echo(json.dumps({"event": "db_upgraded", "database": describe(engine), "revision": now}))


def record_command(
    asset: Annotated[
        list[str] | None, typer.Option("--asset", help="Record only this asset (repeatable).")
    ] = None,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    db: DbUrl = None,
    batch_size: Annotated[int, typer.Option(help="Rows per write transaction.")] = 1_000,
    queue_size: Annotated[
        int, typer.Option(help="Operations buffered while the database is slow or away.")
    ] = 20_000,
    overflow: Annotated[str, typer.Option(help="When the buffer is full: 'block' or 'shed'.")] = "block",
    flush_timeout: Annotated[float, typer.Option(help="Seconds to keep retrying at exit.")] = 30.0,
    upgrade_db: Annotated[
        bool, typer.Option("--upgrade/--no-upgrade", help="Migrate the database first.")
    ] = True,
    verbose: Verbose = False,
) -> None:
    """Record bus traffic (observations, actions, events, schemas) into episodes in the database."""
    from sqlalchemy.exc import SQLAlchemyError

    from bridge import BusConfig
    from twin.logs import setup_logging
    from twin.recorder import Recorder, RecorderConfig
    from twin.store.engine import describe, make_engine
    from twin.store.migrate import upgrade
    from twin.store.writer import BatchWriter, WriterConfig

    setup_logging(verbose)
    try:
        config = RecorderConfig(assets=tuple(asset or ()), duration_s=duration)
        writer_config = WriterConfig(
            batch_size=batch_size,
            queue_size=queue_size,
            overflow=overflow,  # type: ignore[arg-type]
            flush_timeout_s=flush_timeout,
        )
    except ValueError as exc:
        typer.echo(f"twin record: {exc}", err=True)
        raise typer.Exit(2) from None
    engine = make_engine(db)
    try:
        if upgrade_db:
            upgrade(engine)
    except SQLAlchemyError as exc:
        typer.echo(f"twin record: cannot prepare {describe(engine)}: {exc}", err=True)
        raise typer.Exit(2) from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    writer = BatchWriter(engine, writer_config).start()
    recorder = Recorder(BusConfig.from_env(), writer, config)
    typer.echo(json.dumps({"event": "recording", "id": config.recording, "database": describe(engine)}))
    summary = recorder.run(stop)
    engine.dispose()
    typer.echo(json.dumps({"event": "recording_done", **summary.as_dict()}))
    if not summary.complete:
        typer.echo(
            f"twin record: {summary.lost} frame(s) lost, {summary.shed} shed, "
            f"{summary.rejected_by_db} refused by the database",
            err=True,
        )
        raise typer.Exit(1)


def dataset_export_command(
    out: Annotated[Path, typer.Option("--out", help="Output file: .npz or .parquet.")],
    episodes: Annotated[str, typer.Option(help="Episode ids, e.g. '1,2,5-8', or 'all'.")] = "all",
    asset: Annotated[str | None, typer.Option(help="Only episodes of this asset.")] = None,
    stream: Annotated[
        list[str] | None, typer.Option("--stream", help="Only this stream (repeatable).")
    ] = None,
    db: DbUrl = None,
) -> None:
    """Export recorded episodes, with their lineage, for training."""
    from sqlalchemy.orm import Session

    from twin.logs import setup_logging
    from twin.store.dataset import export_episodes, load_episodes
    from twin.store.engine import describe, make_engine

    setup_logging()
    try:
        ids = parse_ids(episodes)
    except ValueError as exc:
        typer.echo(f"twin dataset export: {exc}", err=True)
        raise typer.Exit(2) from None
    engine = make_engine(db)
    try:
        with Session(engine) as session:
            loaded = load_episodes(session, ids, asset=asset, streams=stream)
        if not loaded:
            typer.echo("twin dataset export: no episodes match", err=True)
            raise typer.Exit(1)
        path = export_episodes(loaded, out, database=describe(engine))
    except (LookupError, ValueError) as exc:
        typer.echo(f"twin dataset export: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    frames = sum(len(s.t_ns) for e in loaded for s in (*e.streams.values(), *e.actions.values()))
    typer.echo(
        json.dumps(
            {"event": "exported", "out": str(path), "episodes": [e.id for e in loaded], "rows": frames}
        )
    )


def parse_ids(text: str) -> list[int] | None:
    """``"all"`` -> None; ``"1,2,5-7"`` -> ``[1, 2, 5, 6, 7]``."""
    if text.strip().lower() == "all":
        return None
    ids: list[int] = []
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise ValueError(f"--episodes {text!r}: expected ids like '1,2,5-8' or 'all'")
        ids.extend(range(int(low), int(high or low) + 1))
    return ids
