"""kill -9 the worker mid-run and restart it on the same database.

What must hold: each asset resumes from exactly its last committed snapshot (bit for bit), the
restarted worker computes the same forecasts as the killed one did from the same frames, it
goes on predicting, and every row committed before the kill is still there, once.
"""

from __future__ import annotations

import hashlib
import signal

import numpy as np
import pytest
import sqlalchemy as sa
from feedutil import STEP_NS, Feed, Listener, cartpole_schema, count, feeding, rows, wait_until
from workerutil import spawn, stop, wait_json

from bridge import Observation, Publisher
from twin.store.models import EventRow, LatentStateRow, MemoryRow, PredictionErrorRow, PredictionRow

pytestmark = [pytest.mark.fault, pytest.mark.slow]

ASSETS = ("pole-a", "pole-b")


def _digest(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()[:16]


def _newest_snapshots(url: str) -> dict[str, LatentStateRow]:
    newest = {}
    for row in rows(url, sa.select(LatentStateRow).order_by(LatentStateRow.t_ns)):
        newest[row.asset] = row
    return newest


def _predictions(url: str) -> dict[tuple[str, int], bytes]:
    found = rows(url, sa.select(PredictionRow.asset, PredictionRow.origin_t_ns, PredictionRow.mean))
    return {(asset, origin): mean for asset, origin, mean in found}


def _event_keys(url: str) -> set[tuple]:
    return set(rows(url, sa.select(EventRow.source, EventRow.topic, EventRow.seq, EventRow.t_ns)))


def _errors(url: str) -> dict[tuple[str, int, float], tuple[int, bytes]]:
    """Stored prediction errors: (asset, origin_t_ns, horizon_s) -> (observed_t_ns, observed)."""
    columns = (
        PredictionErrorRow.asset,
        PredictionErrorRow.origin_t_ns,
        PredictionErrorRow.horizon_s,
        PredictionErrorRow.observed_t_ns,
        PredictionErrorRow.observed,
    )
    return {(a, o, h): (t, obs) for a, o, h, t, obs in rows(url, sa.select(*columns))}


def _duplicates(url: str, table: type, *columns: str) -> list:
    key = [getattr(table, c) for c in columns]
    return rows(url, sa.select(*key, sa.func.count()).group_by(*key).having(sa.func.count() > 1))


def _out_of_range_once(step: int, frame: Observation) -> Observation:
    """One bad frame early on, so that an error event is committed before the kill."""
    if step != 12:
        return frame
    values = frame.values.copy()
    values[0] = 40.0  # cart_position is announced as -15..15 m
    return Observation(frame.asset, frame.stream, frame.t_ns, values, frame.schema_id)


def test_kill_9_restart_resumes_exact_state_and_keeps_every_committed_row(
    worker_db, tiny_model, bus_config, tmp_path
):
    args = [
        "worker",
        "--model",
        str(tiny_model),
        "--db",
        worker_db,
        "--calibration-steps",
        "30",
        "--publish-hz",
        "30",  # a prediction at every control step: both runs predict the replayed steps
        "--snapshot-every",
        "0.5",
    ]
    schemas = {asset: cartpole_schema(tiny_model, asset) for asset in ASSETS}
    # the listener takes obs. too, so the bus keeps that subscription while no worker runs
    with Listener(bus_config, ("obs.", "pred.", "event.")) as heard, Publisher(bus_config, "feed") as pub:
        feed = Feed(pub, schemas)
        feed.tamper["pole-b"] = _out_of_range_once
        worker = spawn(args, bus_config, tmp_path)
        try:
            first_ready = wait_json(worker, "worker_ready")
            assert first_ready["restorable"] == []
            feed.announce()
            assert pub.wait_subscribed("obs.pole-a.", 10)
            with feeding(feed, rate_hz=90):
                # mid-run: snapshots, predictions, memories and an event of both assets are
                # committed while frames keep flowing; then kill -9
                wait_until(
                    lambda: (
                        all(count(worker_db, LatentStateRow, LatentStateRow.asset == a) >= 3 for a in ASSETS)
                        and count(worker_db, EventRow) >= 1
                    ),
                    timeout_s=60,
                    what="three committed snapshots per asset and an event",
                )
                worker.send_signal(signal.SIGKILL)
                worker.wait(10)
        finally:
            if worker.poll() is None:
                worker.kill()
        assert worker.returncode == -signal.SIGKILL
        before_kill = heard.predictions()

        snapshots = _newest_snapshots(worker_db)
        predictions = _predictions(worker_db)
        events = _event_keys(worker_db)
        memories = count(worker_db, MemoryRow)
        assert set(snapshots) == set(ASSETS) and predictions and memories >= len(ASSETS)

        # a source replaying what it sent since each asset's snapshot (as a feed with a buffer
        # would): the restarted worker sees the very frames the killed one saw after it
        snapshot_step = {a: feed.step_at(s.t_ns) for a, s in snapshots.items()}
        feed.step = min(snapshot_step.values()) + 1
        feed.tamper = {a: (lambda k, f, a=a: f if k > snapshot_step[a] else None) for a in ASSETS}
        last_origin = max(p.origin_t_ns for p in before_kill)

        worker = spawn(args, bus_config, tmp_path)
        try:
            ready = wait_json(worker, "worker_ready")
            assert ready["restorable"] == sorted(ASSETS)
            with feeding(feed, rate_hz=90):
                serving = wait_json(worker, "worker_serving")
                heard.wait_for(
                    lambda: all(
                        any(p.origin_t_ns > last_origin for p in heard.predictions(a)) for a in ASSETS
                    ),
                    what="predictions past the kill from both assets",
                )
        finally:
            out, err = stop(worker)
        assert worker.returncode == 0, err[-3000:]

    # (a) exact state continuity: each asset resumed from its newest committed snapshot, bit for bit
    assert serving["restored"] >= 1  # the first prediction after the restart came from restored state
    restored = heard.events(name="state_restored")
    assert sorted(e.asset for e in restored) == sorted(ASSETS)
    for event in restored:
        snapshot = snapshots[event.asset]
        assert event.params["snapshot_t_ns"] == snapshot.t_ns
        assert event.params["step"] == snapshot.step
        assert event.params["z_digest"] == _digest(snapshot.z)
        assert event.params["window_digest"] == _digest(snapshot.window)

    # ... and from the same frames, the restarted worker forecasts about what the killed one did.
    # Not bit for bit: the inferred action is a function of z - z_prev, which amplifies the
    # float32 rounding of different batchings (the two runs drain and batch the assets
    # differently) to ~1e-4 at one step and ~2e-3 over the 30-step rollout (up to 2% of the value
    # at the rollout's end with a latent that carries the observation: its inferred actions are
    # sharper). The exact check of the restored state is the digests above.
    after_restart = heard.predictions()[len(before_kill) :]
    old = {(p.asset, p.origin_t_ns): p for p in before_kill}
    compared = 0
    for p in after_restart:
        q = old.get((p.asset, p.origin_t_ns))
        if q is not None:
            np.testing.assert_allclose(p.mean, q.mean, atol=2e-2, rtol=3e-2)
            np.testing.assert_allclose(p.upper, q.upper, atol=2e-2, rtol=3e-2)
            compared += 1
    assert compared >= 1

    # (b) every row committed before the kill is still there, unchanged, and none is stored twice
    after = _predictions(worker_db)
    assert all(after.get(key) == mean for key, mean in predictions.items())
    assert len(after) > len(predictions)
    assert events <= _event_keys(worker_db)
    assert count(worker_db, MemoryRow) >= memories
    assert _duplicates(worker_db, PredictionRow, "asset", "stream", "origin_t_ns") == []
    assert _duplicates(worker_db, EventRow, "source", "topic", "seq", "t_ns") == []
    assert _duplicates(worker_db, LatentStateRow, "asset", "stream", "t_ns", "source") == []
    assert '"restored": 2' in out


def test_predictions_pending_at_a_kill_are_resolved_after_the_restart(
    worker_db, tiny_model, bus_config, tmp_path
):
    """The source pauses while its twin restarts (no frame is lost, none replayed): the errors of
    the predictions the killed worker had stored but could not check yet (their targets lay
    after its last frame) are stored by the restarted worker when those frames arrive, once."""
    args = [
        "worker",
        "--model",
        str(tiny_model),
        "--db",
        worker_db,
        "--calibration-steps",
        "30",
        "--publish-hz",
        "30",
        "--snapshot-every",
        "0.5",
    ]
    schemas = {asset: cartpole_schema(tiny_model, asset) for asset in ASSETS}
    # the listener keeps the bus's obs. subscription while no worker runs
    with Listener(bus_config, ("obs.",)), Publisher(bus_config, "feed") as pub:
        feed = Feed(pub, schemas)
        worker = spawn(args, bus_config, tmp_path)
        try:
            wait_json(worker, "worker_ready")
            feed.announce()
            assert pub.wait_subscribed("obs.pole-a.", 10)
            with feeding(feed, rate_hz=60):
                wait_until(
                    lambda: all(
                        count(worker_db, LatentStateRow, LatentStateRow.asset == a) >= 2 for a in ASSETS
                    ),
                    timeout_s=60,
                    what="two committed snapshots per asset",
                )
            # the feed is paused; once the worker has stored its predictions from the last frame,
            # kill -9
            last_t = feed.t_ns(feed.step - 1)
            wait_until(
                lambda: count(worker_db, PredictionRow, PredictionRow.origin_t_ns == last_t) == len(ASSETS),
                timeout_s=60,
                what="predictions from the last frame before the pause, stored",
            )
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
        finally:
            if worker.poll() is None:
                worker.kill()

        # what the killed worker owed: stored predictions whose targets lie after its last frame
        checked = set(
            rows(
                worker_db,
                sa.select(
                    PredictionErrorRow.asset, PredictionErrorRow.origin_t_ns, PredictionErrorRow.horizon_s
                ),
            )
        )
        owed = {
            (asset, origin, horizon)
            for asset, origin, horizons in rows(
                worker_db, sa.select(PredictionRow.asset, PredictionRow.origin_t_ns, PredictionRow.horizons_s)
            )
            for horizon in horizons
            if origin + round(horizon * 1e9) > last_t and (asset, origin, horizon) not in checked
        }
        assert {asset for asset, _, _ in owed} == set(ASSETS)
        latest_target = max(origin + round(h * 1e9) for _, origin, h in owed)

        worker = spawn(args, bus_config, tmp_path)
        try:
            ready = wait_json(worker, "worker_ready")
            assert ready["restorable"] == sorted(ASSETS)
            with feeding(feed, rate_hz=60):
                wait_until(
                    lambda: feed.t_ns(feed.step) > latest_target + 10 * STEP_NS, 60, "frames past the targets"
                )
                wait_until(lambda: owed <= _errors(worker_db).keys(), 60, "the owed errors stored")
        finally:
            _, err = stop(worker)
        assert worker.returncode == 0, err[-3000:]

    # each owed error compares the prediction with the very frame fed at its target time
    sent = {(f.asset, f.t_ns): f.values for f in feed.sent}
    stored = _errors(worker_db)
    for key in owed:
        asset, origin, horizon = key
        observed_t, observed = stored[key]
        assert abs(observed_t - (origin + round(horizon * 1e9))) <= STEP_NS // 2
        assert np.frombuffer(observed, dtype="<f8").tolist() == sent[(asset, observed_t)].tolist()
    assert _duplicates(worker_db, PredictionErrorRow, "asset", "stream", "origin_t_ns", "horizon_s") == []
    assert _duplicates(worker_db, PredictionRow, "asset", "stream", "model", "origin_t_ns") == []
