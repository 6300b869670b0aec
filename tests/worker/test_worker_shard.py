"""Two workers shard one fleet by asset name over real sockets: each serves, predicts, stores
and restores only its own assets; an asset neither names is served by neither."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from feedutil import Feed, Listener, cartpole_schema, rows
from workerutil import spawn, stop, wait_json

from bridge import Bus, BusConfig, Publisher
from twin.store.models import LatentStateRow, PredictionRow
from twin.worker.config import WorkerConfig

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ASSETS = ("line1-a", "line1-b", "line2-a", "line3-a")
SHARDS = {"w-line1": ("line1-*",), "w-line2": ("line2-a",)}
"""Worker source id -> its ``--asset`` options: a name prefix, and an exact name."""


def test_asset_patterns_select_topics_and_names():
    config = WorkerConfig(assets=("line1-*", "pump"))
    assert config.topics == (
        "obs.line1-",
        "act.line1-",
        "event.line1-",
        "obs.pump.",
        "act.pump.",
        "event.pump.",
    )
    assert [config.serves(a) for a in ("line1-a", "line1-", "line10", "pump", "pump-2")] == [
        True,
        True,
        False,
        True,
        False,
    ]
    assert WorkerConfig().serves("anything")
    for bad in ("a*b", "*", "line.1", "a b", "**"):
        with pytest.raises(ValueError, match="asset name or a name prefix"):
            WorkerConfig(assets=(bad,))


def test_two_workers_shard_a_fleet_by_asset_name(tiny_model: Path, tmp_path: Path):
    schemas = {asset: cartpole_schema(tiny_model, asset) for asset in ASSETS}
    dbs = {source: f"sqlite:///{tmp_path / f'{source}.sqlite'}" for source in SHARDS}
    with Bus(BusConfig.local(heartbeat_s=0.2)) as bus:
        workers = {}
        try:
            for source, patterns in SHARDS.items():
                args = ["worker", "--model", str(tiny_model), "--db", dbs[source], "--source", source]
                args += ["--calibration-steps", "30", *(f"--asset={p}" for p in patterns)]
                workers[source] = spawn(args, bus.config, tmp_path / source)
            for worker in workers.values():
                wait_json(worker, "worker_ready")
            with Listener(bus.config, ("pred.",)) as heard, Publisher(bus.config, "feed") as pub:
                feed = Feed(pub, schemas)
                feed.announce()
                assert pub.wait_subscribed("obs.line1-a.", 10) and pub.wait_subscribed("obs.line2-a.", 10)
                feed.run(60, rate_hz=60)
                heard.wait_for(
                    lambda: {"line1-a", "line1-b", "line2-a"} <= {p.asset for p in heard.predictions()},
                    timeout_s=30,
                    what="predictions of every served asset",
                )
                predictions = heard.snapshot()
        finally:
            outs = {source: stop(worker) for source, worker in workers.items()}
    for source, worker in workers.items():
        assert worker.returncode == 0, outs[source][1][-3000:]
    by_source: dict[str, set[str]] = {}
    for p in predictions:
        by_source.setdefault(p.source, set()).add(p.asset)
    assert by_source == {"w-line1": {"line1-a", "line1-b"}, "w-line2": {"line2-a"}}  # line3-a: no one's
    for source, served in by_source.items():
        stored = {a for (a,) in rows(dbs[source], sa.select(PredictionRow.asset).distinct())}
        assert stored == served
        snapshots = {a for (a,) in rows(dbs[source], sa.select(LatentStateRow.asset).distinct())}
        assert snapshots == served
        stopped = json.loads(
            next(line for line in outs[source][0].splitlines() if '"worker_stopped"' in line)
        )
        assert stopped["observations"] > 0


def test_a_restarted_shard_restores_only_its_own_assets(tiny_model: Path, tmp_path: Path):
    """Both shards write to one database: a worker restarted on its shard restores the latent
    states of its assets, not its neighbour's."""
    schemas = {asset: cartpole_schema(tiny_model, asset) for asset in ASSETS[:3]}
    db = f"sqlite:///{tmp_path / 'fleet.sqlite'}"
    with Bus(BusConfig.local(heartbeat_s=0.2)) as bus:
        args = ["worker", "--model", str(tiny_model), "--db", db, "--calibration-steps", "30"]
        first = spawn([*args, "--source", "w-all"], bus.config, tmp_path / "all")
        try:
            wait_json(first, "worker_ready")
            with Publisher(bus.config, "feed") as pub:
                feed = Feed(pub, schemas)
                feed.announce()
                assert pub.wait_subscribed("obs.line2-a.", 10)
                feed.run(60, rate_hz=60)
        finally:
            stop(first)
        restarted = spawn([*args, "--source", "w-line1", "--asset=line1-*"], bus.config, tmp_path / "one")
        try:
            ready = wait_json(restarted, "worker_ready")
        finally:
            stop(restarted)
    assert ready["restorable"] == ["line1-a", "line1-b"], ready
