"""The worker's tables on each backend: round trips through the worker's writer, idempotent
inserts (a retried batch or a restarted worker stores each row once, the first write wins),
restoring the newest snapshot, memory search, and shedding that keeps room for events."""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from bridge import Event
from twin.store.models import EventRow, LatentStateRow, MemoryRow, PredictionErrorRow, PredictionRow
from twin.store.writer import WriterConfig
from twin.worker.config import WorkerConfig
from twin.worker.memory import memory_op, search
from twin.worker.persistence import RowOp, WorkerWriter, event_op, f32, f64, latest_states

T0 = 1_700_000_000_000_000_000


def prediction(asset: str, origin: int, scale: float = 1.0, model: str = "cartpole:1") -> RowOp:
    mean = scale * np.arange(8.0).reshape(2, 4)
    return RowOp(
        "predictions",
        {
            "asset": asset,
            "stream": "state",
            "origin_t_ns": origin,
            "model": model,
            "source": "worker",
            "horizons_s": [1 / 30, 5 / 30],
            "level": 0.9,
            "mean": f64(mean),
            "lower": f64(mean - 1),
            "upper": f64(mean + 1),
            "surprise": None,
        },
    )


def prediction_error(asset: str, origin: int) -> RowOp:
    return RowOp(
        "prediction_errors",
        {
            "asset": asset,
            "stream": "state",
            "origin_t_ns": origin,
            "horizon_s": 1 / 30,
            "target_t_ns": origin + 33_333_333,
            "observed_t_ns": origin + 33_333_000,
            "predicted": f64(np.zeros(4)),
            "observed": f64(np.full(4, 0.5)),
            "error": f64(np.full(4, 0.5)),
            "nrmse": 0.25,
            "in_band": True,
        },
    )


def snapshot(asset: str, t_ns: int, step: int, seed: int) -> RowOp:
    rng = np.random.default_rng(seed)
    return RowOp(
        "latent_states",
        {
            "asset": asset,
            "stream": "state",
            "t_ns": t_ns,
            "source": "worker",
            "model": "cartpole:1",
            "schema_id": "abc123",
            "step": step,
            "z": f32(rng.normal(size=16)),
            "window": f64(rng.normal(size=(4, 4))),
            "action": f64(rng.normal(size=1)),
            "detector": {"armed": True, "cusum": 0.5, "centre": [0.1, 0.2]},
            "reason": "periodic",
        },
    )


def write(engine: sa.Engine, ops: list[RowOp]) -> WorkerWriter:
    with WorkerWriter(engine, WriterConfig(flush_interval_s=0.01)) as writer:
        for op in ops:
            assert writer.submit(op)
    return writer


def test_worker_rows_round_trip_through_the_writer(engine: sa.Engine) -> None:
    event = Event("pole", T0 + 5, "anomaly", "anomaly", "warning", "pole: anomaly", {"score": 3.5})
    key = np.linspace(-1, 1, 16)
    write(
        engine,
        [
            prediction("pole", T0),
            prediction_error("pole", T0),
            snapshot("pole", T0, 7, seed=1),
            memory_op("pole", T0, "keyframe", "cartpole:1", key, {"values": [0.0, 1.0]}),
            event_op(event, 3, "worker"),
        ],
    )
    with Session(engine) as session:
        pred = session.scalars(sa.select(PredictionRow)).one()
        err = session.scalars(sa.select(PredictionErrorRow)).one()
        state = session.scalars(sa.select(LatentStateRow)).one()
        memory = session.scalars(sa.select(MemoryRow)).one()
        stored = session.scalars(sa.select(EventRow)).one()
    assert np.array_equal(np.frombuffer(pred.mean, "<f8").reshape(2, 4), np.arange(8.0).reshape(2, 4))
    assert pred.horizons_s == [1 / 30, 5 / 30] and pred.surprise is None
    assert err.in_band is True and np.array_equal(np.frombuffer(err.error, "<f8"), np.full(4, 0.5))
    expected = snapshot("pole", T0, 7, seed=1).row
    assert (state.z, state.window, state.action) == (expected["z"], expected["window"], expected["action"])
    assert state.detector == expected["detector"] and state.step == 7
    assert np.array_equal(np.frombuffer(memory.key, "<f4"), key.astype(np.float32))
    assert memory.context == {"values": [0.0, 1.0]}
    assert (stored.topic, stored.seq, stored.params) == ("event.pole.anomaly", 3, {"score": 3.5})


def test_a_retried_or_restarted_write_stores_each_row_once_and_the_first_wins(engine: sa.Engine) -> None:
    event = Event("pole", T0, "error", "out_of_range", "warning", "bad frame")
    first = [prediction("pole", T0 + i, scale=1.0) for i in range(5)]
    first += [prediction_error("pole", T0), snapshot("pole", T0, 1, seed=2), event_op(event, 0, "worker")]
    first.append(memory_op("pole", T0, "note", "cartpole:1", np.ones(16), {"note": "first"}))
    write(engine, first)
    # the same keys again (a batch retried after a lost commit acknowledgement, a restarted
    # worker replaying frames), some with other values, plus new rows in the same batch
    again = [prediction("pole", T0 + i, scale=-1.0) for i in range(3, 8)]
    again += [prediction_error("pole", T0), snapshot("pole", T0, 1, seed=3), event_op(event, 0, "worker")]
    again.append(memory_op("pole", T0, "note", "cartpole:1", -np.ones(16), {"note": "second"}))
    write(engine, again)
    with Session(engine) as session:
        means = dict(session.execute(sa.select(PredictionRow.origin_t_ns, PredictionRow.mean)).all())
        counts = {
            table.__tablename__: session.scalar(sa.select(sa.func.count()).select_from(table))
            for table in (PredictionErrorRow, LatentStateRow, EventRow, MemoryRow)
        }
        memory = session.scalars(sa.select(MemoryRow)).one()
        state = session.scalars(sa.select(LatentStateRow)).one()
    assert sorted(means) == [T0 + i for i in range(8)]
    assert all(np.frombuffer(means[T0 + i], "<f8")[1] == 1.0 for i in range(5))  # first write kept
    assert all(np.frombuffer(means[T0 + i], "<f8")[1] == -1.0 for i in range(5, 8))
    assert counts == {"prediction_errors": 1, "latent_states": 1, "events": 1, "memories": 1}
    assert memory.context == {"note": "first"} and state.z == snapshot("pole", T0, 1, seed=2).row["z"]


def test_latest_states_gives_the_newest_snapshot_of_each_asset(engine: sa.Engine) -> None:
    write(
        engine,
        [
            snapshot("pole-a", T0 + 1, 1, seed=1),
            snapshot("pole-a", T0 + 3, 3, seed=3),
            snapshot("pole-a", T0 + 2, 2, seed=2),
            snapshot("pole-b", T0 + 1, 9, seed=9),
        ],
    )
    newest = latest_states(engine, "state")
    assert {asset: row.step for asset, row in newest.items()} == {"pole-a": 3, "pole-b": 9}
    assert newest["pole-a"].z == snapshot("pole-a", T0 + 3, 3, seed=3).row["z"]
    assert list(latest_states(engine, "state", WorkerConfig(assets=("pole-b",)).serves)) == ["pole-b"]
    shard = WorkerConfig(assets=("pole-*",)).serves
    assert set(latest_states(engine, "state", shard)) == {"pole-a", "pole-b"}
    assert latest_states(engine, "camera") == {}


def test_memory_search_ranks_similar_moments_first(engine: sa.Engine) -> None:
    second = 1_000_000_000
    x, y = np.array([1.0] * 8 + [0.0] * 8), np.array([0.0] * 8 + [1.0] * 8)
    moments = [(0, x), (10, x + 0.1 * y), (20, y), (30, y + 0.2 * x), (40, x)]
    write(engine, [memory_op("pole", T0 + s * second, "note", "cartpole:1", z, {"s": s}) for s, z in moments])
    found = search(engine, "pole", T0 + 40 * second, k=3)
    assert [m.context["s"] for m in found] == [0, 10, 30]  # the query itself (s=40) is left out
    assert found[0].similarity == 1.0 and found[0].kind == "note"
    assert search(engine, "pole", T0 + 20 * second, k=1)[0].context["s"] == 30
    assert search(engine, "other", T0, k=3) == []


def test_shedding_keeps_room_for_events_and_counts_what_it_drops(engine: sa.Engine) -> None:
    writer = WorkerWriter(engine, WriterConfig(queue_size=10, overflow="shed", flush_interval_s=0.01))
    # the writer thread is not started yet: the queue fills as it would while the database is away
    accepted = [writer.submit(prediction("pole", T0 + i)) for i in range(20)]
    assert accepted.count(True) == 9 and writer.stats.shed["predictions"] == 11
    event = Event("pole", T0, "anomaly", "anomaly", "warning", "kept")
    assert writer.submit(event_op(event, 0, "worker"))  # the reserved tenth of the queue
    writer.start()
    stats = writer.close()
    assert stats.lost == 0 and stats.written == {"predictions": 9, "events": 1}
    with Session(engine) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(PredictionRow)) == 9
        assert session.scalar(sa.select(EventRow.message)) == "kept"


def test_two_models_predictions_of_one_asset_coexist_and_each_is_stored_once(engine: sa.Engine) -> None:
    """The key is (asset, stream, model, origin): a second model's forecasts for the same moments
    are kept beside the first's (to be compared), a retried write of either is still ignored."""
    first = [prediction("pole", T0 + i, scale=1.0, model="cartpole:1") for i in range(4)]
    second = [prediction("pole", T0 + i, scale=2.0, model="cartpole:2") for i in range(4)]
    write(engine, first + second)
    write(engine, [prediction("pole", T0 + i, scale=-1.0, model="cartpole:2") for i in range(2)])
    with Session(engine) as session:
        rows = session.execute(
            sa.select(PredictionRow.model, PredictionRow.origin_t_ns, PredictionRow.mean)
        ).all()
    means = {(model, origin): np.frombuffer(mean, "<f8")[1] for model, origin, mean in rows}
    assert len(rows) == 8
    assert all(means[("cartpole:1", T0 + i)] == 1.0 for i in range(4))
    assert all(means[("cartpole:2", T0 + i)] == 2.0 for i in range(4))  # first write kept
