"""sim -> bus -> worker -> SQL, as real processes over real sockets, on SQLite and PostgreSQL.

Predictions arrive on the bus, are stored, and the errors stored beside them match what the
sim actually published at the target times.
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import sqlalchemy as sa
from workerutil import spawn, stop, wait_json

from bridge import Observation, Prediction, Subscriber
from twin.store.models import PredictionErrorRow, PredictionRow

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _collect(bus_config, topics, out, done):
    with Subscriber(bus_config, topics, name="test-listener") as sub:
        done.set()
        while done.is_set():
            message = sub.recv(timeout_s=0.1)
            if message is not None:
                out.append(message)


def test_predictions_arrive_and_stored_errors_match_observed_futures(
    bus_config, tiny_model, tmp_path, worker_db
):
    db = worker_db  # a SQLite file, and a PostgreSQL schema under the services marker
    seen: list = []
    listening = threading.Event()
    listener = threading.Thread(target=_collect, args=(bus_config, ("obs.", "pred."), seen, listening))
    listener.start()
    assert listening.wait(10)
    worker = spawn(
        ["worker", "--model", str(tiny_model), "--db", db, "--calibration-steps", "30"], bus_config, tmp_path
    )
    try:
        ready = wait_json(worker, "worker_ready")
        assert ready["models"] == ["cartpole-tiny:1"]
        sim = spawn(
            [
                "sim",
                "--scene",
                "cartpole",
                "--assets",
                "2",
                "--state-hz",
                "30",
                "--camera-hz",
                "0",
                "--duration",
                "5",
                "--seed",
                "3",
            ],
            bus_config,
            tmp_path,
        )
        wait_json(sim, "sim_ready")
        sim.wait(timeout=60)
        time.sleep(1.0)
    finally:
        out, _ = stop(worker)
        listening.clear()
        listener.join()
    assert worker.returncode == 0
    stopped = json.loads(next(line for line in out.splitlines() if '"worker_stopped"' in line))
    # the sim's act.<asset>.applied, one before each reading: the worker held the applied actions
    assert stopped["actions"] >= 0.9 * stopped["observations"] > 0

    observed = {
        (m.asset, m.t_ns): m.values for m in seen if isinstance(m, Observation) and m.stream == "state"
    }
    predictions = [m for m in seen if isinstance(m, Prediction)]
    assert {p.asset for p in predictions} == {"cartpole-0", "cartpole-1"}
    first = predictions[0]
    assert first.mean.shape == (4, 4) and np.all(first.lower <= first.upper)
    assert np.allclose(first.horizons_s, np.array([1, 5, 10, 30]) / 30.0)
    # beside each prediction, the surprise stream: (score, cusum ratio, anomaly flag)
    surprise = [m for m in seen if isinstance(m, Observation) and m.stream == "surprise"]
    assert {m.asset for m in surprise} == {"cartpole-0", "cartpole-1"}
    assert abs(len(surprise) - len(predictions)) <= 2
    values = np.stack([m.values for m in surprise])
    assert values.shape[1] == 3 and np.isfinite(values).all() and (values[:, :2] >= 0).all()
    assert set(np.unique(values[:, 2])) <= {0.0, 1.0}
    assert (values[:, 0] > 0).any()  # calibrated (30 steps) and judging

    engine = sa.create_engine(db, poolclass=sa.NullPool)
    with engine.connect() as connection:
        stored = connection.execute(sa.select(PredictionRow)).all()
        errors = connection.execute(sa.select(PredictionErrorRow)).all()
    engine.dispose()
    assert len(stored) >= 0.8 * len(predictions) and len(stored) > 20
    assert {(r.asset, r.origin_t_ns) for r in stored} <= {(p.asset, p.origin_t_ns) for p in predictions}
    assert any(r.surprise is not None for r in stored)  # stored with the score once calibrated
    assert len(errors) > 40
    checked = 0
    for row in errors:
        truth = observed.get((row.asset, row.observed_t_ns))
        if truth is None:
            continue
        got = np.frombuffer(row.observed, dtype="<f8")
        predicted = np.frombuffer(row.predicted, dtype="<f8")
        error = np.frombuffer(row.error, dtype="<f8")
        assert np.array_equal(got, truth)
        delta = truth - predicted
        delta[2] = (delta[2] + np.pi) % (2 * np.pi) - np.pi  # pole_angle is wrapped
        assert np.allclose(error, delta, atol=1e-9)
        assert abs(row.observed_t_ns - row.target_t_ns) <= 1e9 / 30 / 2 + 1
        assert row.model == "cartpole-tiny:1"
        checked += 1
    assert checked > 0.9 * len(errors)
