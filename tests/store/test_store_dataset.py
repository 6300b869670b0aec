"""Episodes back out as arrays (load_episodes) and as files (npz, parquet), with lineage."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session
from storeutil import ASSET, action, event, frame, image_schema, observation, vector_schema
from typer.testing import CliRunner

from twin.cli import app
from twin.store import telemetry as t
from twin.store.cli import parse_ids
from twin.store.dataset import export_episodes, load_episodes
from twin.store.export import read_lineage


@pytest.fixture
def recorded(engine: sa.Engine) -> list[int]:
    """Two episodes: the first with state, camera, actions and a fault; the second state only."""
    with Session(engine) as session, session.begin():
        asset_id = t.ensure_asset(session, ASSET)
        t.record_stream(session, asset_id, vector_schema())
        t.record_stream(session, asset_id, image_schema())
        first = t.open_episode(session, asset_id, 0, scene="pendulum-v1", seed=11, controller="pid")
        rows = [t.observation_row(first, observation(i)) for i in range(20)]
        t.insert_observations(session, rows[::-1])  # stored out of order; loaded in time order
        t.insert_observations(session, [t.observation_row(first, frame(i)) for i in range(4)])
        t.insert_actions(session, [t.action_row(first, action(i)) for i in range(20)])
        t.insert_events(session, [t.event_row(event(0, category="fault", name="stuck"), first)])
        t.close_episode(session, first, 10**9, "marker")
        second = t.open_episode(session, asset_id, 10**9, seed=12)
        t.insert_observations(
            session, [t.observation_row(second, observation(i, t0=10**9)) for i in range(5)]
        )
        t.close_episode(session, second, 2 * 10**9, "recording_stopped")
    return [first, second]


def test_load_episodes_gives_arrays_in_time_order(engine: sa.Engine, recorded: list[int]) -> None:
    with Session(engine) as session:
        first, second = load_episodes(session)
        assert [e.id for e in load_episodes(session, [recorded[1]])] == [recorded[1]]
        assert load_episodes(session, asset="nobody") == []
        with pytest.raises(LookupError, match="999"):
            load_episodes(session, [999])
        only_state = load_episodes(session, [recorded[0]], streams=["state"])[0]
    assert set(only_state.streams) == {"state"}
    state = first.streams["state"]
    assert state.values.shape == (20, 2) and state.values.dtype == np.float64
    np.testing.assert_array_equal(state.values, np.stack([observation(i).values for i in range(20)]))
    assert list(state.seq) == list(range(20)) and np.all(np.diff(state.t_ns) > 0)
    assert state.names == ("angle", "rate") and state.units == ("rad", "rad/s")
    camera = first.streams["camera"]
    assert camera.kind == "image" and camera.values.shape == (4, 8, 8, 3) and camera.values.dtype == np.uint8
    np.testing.assert_array_equal(camera.values[3], frame(3).values)
    cmd = first.actions["cmd"]
    assert cmd.values.shape == (20, 1) and cmd.names == ("torque",) and cmd.units == ("N*m",)
    assert (first.scene, first.seed, first.controller) == ("pendulum-v1", 11, "pid")
    assert [e["name"] for e in first.events] == ["stuck"]
    assert second.seed == 12 and second.streams["state"].values.shape == (5, 2)


def test_npz_export_round_trip(engine: sa.Engine, recorded: list[int], tmp_path) -> None:
    with Session(engine) as session:
        episodes = load_episodes(session)
    path = export_episodes(episodes, tmp_path / "out" / "episodes.npz", database="test-db")
    with np.load(path) as archive:  # allow_pickle stays False
        for episode in episodes:
            for name, data in episode.streams.items():
                np.testing.assert_array_equal(archive[f"episode_{episode.id}/obs/{name}/values"], data.values)
                np.testing.assert_array_equal(archive[f"episode_{episode.id}/obs/{name}/t_ns"], data.t_ns)
            cmd = archive[f"episode_{episode.id}/act/cmd/values"] if episode.actions else None
            if cmd is not None:
                np.testing.assert_array_equal(cmd, episode.actions["cmd"].values)
        lineage = json.loads(str(archive["lineage"]))
    assert lineage == read_lineage(path)
    assert lineage["database"] == "test-db" and [e["id"] for e in lineage["episodes"]] == recorded
    first = lineage["episodes"][0]
    assert (first["scene"], first["seed"]) == ("pendulum-v1", 11)
    assert first["streams"]["state"]["units"] == ["rad", "rad/s"]
    assert first["streams"]["state"]["schema_id"] == vector_schema().schema_id


def test_parquet_export_round_trip(engine: sa.Engine, recorded: list[int], tmp_path) -> None:
    with Session(engine) as session:
        episodes = load_episodes(session)
    path = export_episodes(episodes, tmp_path / "episodes.parquet")
    table = pq.read_table(path).to_pylist()
    first = episodes[0]
    state = [r for r in table if r["episode_id"] == first.id and r["stream"] == "state"]
    np.testing.assert_array_equal(np.array([r["values"] for r in state]), first.streams["state"].values)
    camera = [r for r in table if r["stream"] == "camera"]
    pixels = np.stack([np.frombuffer(r["data"], r["dtype"]).reshape(r["shape"]) for r in camera])
    np.testing.assert_array_equal(pixels, first.streams["camera"].values)
    assert len(table) == 20 + 4 + 20 + 5
    assert read_lineage(path)["episodes"][1]["seed"] == 12


def test_export_refuses_unknown_format(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"\.npz or \.parquet"):
        export_episodes([], tmp_path / "x.csv")


def test_cli_upgrade_and_export(store_url: str, recorded: list[int], tmp_path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["db", "upgrade", "--db", store_url])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["revision"]
    out = tmp_path / "cli.npz"
    args = ["dataset", "export", "--db", store_url, "--episodes", str(recorded[0]), "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert [e["id"] for e in read_lineage(out)["episodes"]] == [recorded[0]]
    result = runner.invoke(
        app, ["dataset", "export", "--db", store_url, "--episodes", "999", "--out", str(out)]
    )
    assert result.exit_code == 2 and "999" in result.output


def test_parse_ids() -> None:
    assert parse_ids("all") is None
    assert parse_ids("1, 3-5,9") == [1, 3, 4, 5, 9]
    with pytest.raises(ValueError, match="ids like"):
        parse_ids("one")
