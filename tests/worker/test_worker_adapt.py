"""Online adaptation in a real worker process, fed real PyBullet cart-pole data over the bus.

The regime changed (pole mass x3 from the first step: nominal for the worker, which calibrates on
it, but not what the model was trained on). The worker buffers nominal steps, fine-tunes in a
background process at a bounded CPU budget, registers the result as version 2 and switches the
asset. The test then checks, on fresh simulated episodes of the changed regime the worker never
saw, that version 2 forecasts better than version 1; and that no step of an anomaly (two
sensors stuck for 3 s, on each asset at a different time, or any other anomaly the detector
raised) was trained or evaluated on.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from feedutil import STEP_NS, Listener, cartpole_schema, rows, wait_until
from workerutil import spawn, stop, wait_json

from bridge import Action, Observation, Publisher
from twin.store.models import EventRow, LatentStateRow, ModelRow, PredictionRow

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

HEAVY_POLE = {"kind": "mass_change", "link": "pole", "factor": 3.0}
ASSETS = ("pole-a", "pole-b")
STEPS = 9000
RATE_HZ = 30.0
"""Steps fed per wall second (real time; the stream clock starts well in the past)."""
STUCK_STEPS = 45
"""Once an asset's detector is armed, its pole angle and cart velocity sensors stick for this
many steps: an anomaly (the ``stuck`` statistic flags it within a few steps), never nominal data.
With ``--adapt-min-steps`` well above the few steps before it, any asset a job uses has passed
its fault."""
GUARD_S = 1.0
CPU_FRACTION = 0.5


def _changed_regime(seeds: list[int], steps: int):
    from twin.worker.evaluation import simulate

    return simulate(seeds, steps, [HEAVY_POLE] * len(seeds), fault_s=0.0)


class _Feed:
    """Publishes each asset's held action, then its reading, step by step at ~RATE_HZ steps/s;
    ``stuck[asset]`` (set by the test while it runs) freezes two of its sensors for those steps."""

    def __init__(self, pub: Publisher, schemas: dict, episodes, t0_ns: int, first: int = 0) -> None:
        self.pub, self.schemas, self.episodes, self.t0_ns = pub, schemas, episodes, t0_ns
        self.first = self.step = first
        self.stuck: dict[str, range] = {}
        self.done = threading.Event()

    def run(self) -> None:
        start = time.monotonic() - self.first / RATE_HZ
        for k in range(self.first, STEPS):
            if self.done.is_set():
                return
            self.step = k
            t_ns = self.t0_ns + k * STEP_NS
            for i, asset in enumerate(ASSETS):
                values = self.episodes.observed[i, k].copy()
                stuck = self.stuck.get(asset, range(0))
                if k in stuck:
                    values[1:3] = self.episodes.observed[i, stuck[0], 1:3]
                self.pub.publish(Action(asset, t_ns, self.episodes.actions[i, k].copy()))
                self.pub.publish(Observation(asset, "state", t_ns, values, self.schemas[asset].schema_id))
            ahead = start + (k + 1) / RATE_HZ - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)


def _armed(db: str, asset: str) -> bool:
    """The worker's detector for ``asset`` is calibrated: its stored predictions carry a surprise."""
    found = rows(
        db,
        sa.select(sa.func.count())
        .select_from(PredictionRow)
        .where(PredictionRow.asset == asset, PredictionRow.surprise.is_not(None)),
    )
    return found[0][0] > 0


def _nrmse(checkpoint, windows, horizon: int) -> float:
    from twin.model.baselines import NeuralForecaster
    from twin.model.evaluate import nrmse_table, observed_future

    history = checkpoint.model.history
    predicted = NeuralForecaster(checkpoint.model, checkpoint.features, history).forecast(windows, horizon)
    observed = observed_future(windows, history, horizon)
    return float(nrmse_table(predicted, observed, checkpoint.features).mean())


def test_adaptation_registers_a_better_version_and_never_uses_anomalous_steps(
    tiny_model: Path, bus_config, tmp_path: Path, worker_db: str
):
    """On SQLite and on PostgreSQL: the job registers in the same store the worker serves from."""
    db = worker_db
    episodes = _changed_regime([21, 22], STEPS)
    schemas = {asset: cartpole_schema(tiny_model, asset) for asset in ASSETS}
    t0_ns = time.time_ns() - 600 * 10**9
    args = [
        "worker",
        "--model",
        str(tiny_model),
        "--db",
        db,
        "--calibration-steps",
        "300",
        "--margin",
        "4",
        "--adapt",
        "--adapt-every",
        "5",
        "--adapt-min-steps",
        "400",
        "--adapt-buffer",
        "3000",
        "--adapt-steps",
        "80",
        "--adapt-cpu",
        str(CPU_FRACTION),
        "--adapt-guard",
        str(GUARD_S),
        "--adapt-seed",
        "3",
    ]
    failure: AssertionError | None = None
    with Listener(bus_config, ("pred.", "event.")) as heard, Publisher(bus_config, "feed") as pub:
        worker = spawn(args, bus_config, tmp_path)
        feeder = None
        try:
            wait_json(worker, "worker_ready")
            for schema in schemas.values():
                pub.announce(schema)
            assert pub.wait_subscribed("obs.pole-a.", 10)
            feed = _Feed(pub, schemas, episodes, t0_ns)
            feeder = threading.Thread(target=feed.run, daemon=True)
            feeder.start()
            for asset in ASSETS:
                # generous: on a machine loaded 10-20 deep the worker steps only a few times a second
                wait_until(lambda a=asset: _armed(db, a), 300, f"{asset}'s detector armed")
                first = feed.step + 20
                feed.stuck[asset] = range(first, first + STUCK_STEPS)
            # a job on too little data may not beat the base model (adaptation_rejected, nothing
            # registered); the next one, on more, must
            outcome = heard.wait_for(
                lambda: [e for e in heard.events() if e.name == "model_adapted"],
                timeout_s=400,
                what="an adapted model",
            )
            # the first switch (jobs that registered a version no asset could take, e.g. one
            # inside an anomaly by then, may have used lower version numbers)
            event = outcome[0]
            switched, to = event.asset, event.params["to"]
            heard.wait_for(
                lambda: any(p.model == to for p in heard.predictions(switched)),
                timeout_s=60,
                what=f"{switched} predicted by the adapted model",
            )
        except AssertionError as exc:
            failure = exc
        finally:
            if feeder is not None:
                feed.done.set()
            if feeder is not None:
                feeder.join(10)
            out, err = stop(worker)
        if failure is not None:
            raise AssertionError(f"{failure}\n--- worker stderr ---\n{err[-4000:]}") from failure
        assert worker.returncode == 0, err[-3000:]
    summary = json.loads(next(line for line in out.splitlines() if '"worker_stopped"' in line))["adapt"]
    print(json.dumps(summary))
    assert summary["accepted"] >= 1 and summary["switched"] >= 1, summary

    # the worker's own held-out figures: the adapted model is better for the switched asset
    assert event.params["from"] == "cartpole-tiny:1"
    name, version = to.rsplit(":", 1)
    assert name == "cartpole-tiny" and int(version) >= 2
    assert event.params["asset_nrmse"] < event.params["asset_base_nrmse"]

    # registered as a new version of the same name, with what it learnt from
    (row,) = rows(db, sa.select(ModelRow).where(ModelRow.name == name, ModelRow.version == int(version)))
    assert Path(row.path).exists()
    assert row.lineage["source"] == "online_adaptation"
    assert row.lineage["adapted_from"] == "cartpole-tiny:1"
    figures = row.metrics["adapt"]
    assert figures["nrmse"] < figures["base_nrmse"]
    # the duty cycle kept the job under its CPU budget (holds by construction, whatever the load)
    assert figures["cpu_s"] <= CPU_FRACTION * figures["wall_s"] * 1.05 + 0.05

    # independently: on fresh episodes of the changed regime, the adapted version forecasts
    # better (by 5-8% when the first switch is a later job's version, seen on a slower machine;
    # 10% and more when it is the first job's)
    from twin.model.checkpoint import load_checkpoint
    from twin.model.data import Dataset, Episode, make_windows

    base, tuned = load_checkpoint(tiny_model), load_checkpoint(row.path)
    fresh = _changed_regime([901, 902, 903], 600)
    data = Dataset(base.schema, tuple(Episode(fresh.observed[i], fresh.actions[i, :-1]) for i in range(3)))
    windows = make_windows(data, base.features, base.model.history, 10, stride=2)
    assert _nrmse(tuned, windows, 10) < 0.97 * _nrmse(base, windows, 10)

    # never adapted on anomalous data: for every asset the job used, its faulty frames were
    # flagged, and nothing within the guard of a flagged anomaly is in the ranges it used
    ranges = row.lineage["ranges"]
    assert ranges and set(ranges) <= set(ASSETS)
    guard = round(GUARD_S * 1e9)
    for asset, used_by in ranges.items():
        used = used_by["train"] + used_by["holdout"]
        anomalies = rows(
            db,
            sa.select(EventRow.name, EventRow.t_ns, EventRow.params)
            .where(EventRow.asset == asset, EventRow.category == "anomaly")
            .order_by(EventRow.t_ns),
        )
        intervals, start = [], None
        for name, t_ns, params in anomalies:
            if name == "anomaly":
                start = params["since_t_ns"] - guard
            elif start is not None:
                intervals.append((start, t_ns + guard))
                start = None
        if start is not None:
            intervals.append((start, np.iinfo(np.int64).max))
        faulty = [t0_ns + k * STEP_NS for k in feed.stuck[asset]]
        assert all(any(a <= t < b for a, b in intervals) for t in faulty), (asset, anomalies)
        assert not [t for t in faulty for lo, hi in used if lo <= t <= hi], asset
        assert [(lo, hi, a, b) for lo, hi in used for a, b in intervals if lo < b and hi >= a] == [], asset

    # restarted with version 1 only (the path it was first given), the worker resumes the switched
    # asset on the adapted model its last snapshot names, not afresh on version 1
    (last,) = rows(
        db,
        sa.select(LatentStateRow.model)
        .where(LatentStateRow.asset == switched)
        .order_by(LatentStateRow.t_ns.desc())
        .limit(1),
    )
    resumed_on = last.model
    assert resumed_on != "cartpole-tiny:1"
    args = ["worker", "--model", str(tiny_model), "--db", db, "--calibration-steps", "300", "--margin", "4"]
    with Listener(bus_config, ("pred.", "event.")) as heard, Publisher(bus_config, "feed-again") as pub:
        worker = spawn(args, bus_config, tmp_path)
        feed = _Feed(pub, schemas, episodes, t0_ns, first=feed.step + 1)
        feeder = threading.Thread(target=feed.run, daemon=True)
        try:
            ready = wait_json(worker, "worker_ready")
            assert switched in ready["restorable"]
            for schema in schemas.values():
                pub.announce(schema)
            assert pub.wait_subscribed("obs.pole-a.", 10)
            feeder.start()
            heard.wait_for(
                lambda: [e for e in heard.events() if e.name == "state_restored" and e.asset == switched],
                timeout_s=60,
                what=f"{switched} restored",
            )
            heard.wait_for(
                lambda: any(p.model == resumed_on for p in heard.predictions(switched)),
                timeout_s=60,
                what=f"{switched} predicted by {resumed_on} after the restart",
            )
            assert not any(p.model == "cartpole-tiny:1" for p in heard.predictions(switched))
        finally:
            feed.done.set()
            if feeder.is_alive():
                feeder.join(10)
            out, err = stop(worker)
        assert worker.returncode == 0, err[-3000:]
