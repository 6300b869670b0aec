"""An injected sim fault becomes an anomaly Event naming the fault, its delay and the sensors."""

from __future__ import annotations

import json
import threading

import pytest
import sqlalchemy as sa
from workerutil import spawn, stop, wait_json

from bridge import Event, Subscriber
from twin.store.models import EventRow

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_sensor_bias_raises_an_anomaly_event(bus_config, tiny_model, tmp_path):
    db = f"sqlite:///{tmp_path / 'twin.sqlite'}"
    events: list[Event] = []
    ready = threading.Event()

    def listen() -> None:
        with Subscriber(bus_config, ("event.",), name="test-events") as sub:
            ready.set()
            while ready.is_set():
                message = sub.recv(timeout_s=0.1)
                if isinstance(message, Event):
                    events.append(message)

    listener = threading.Thread(target=listen)
    listener.start()
    assert ready.wait(10)
    worker = spawn(
        ["worker", "--model", str(tiny_model), "--db", db, "--calibration-steps", "200", "--margin", "2"],
        bus_config,
        tmp_path,
    )
    try:
        wait_json(worker, "worker_ready")
        # at 12 s: 200 calibration steps are over even when a loaded machine makes the worker
        # coalesce some frames (steps over a gap are not one-step evidence and are skipped)
        fault = {"kind": "sensor_bias", "sensor": "cart_position", "bias": 0.5, "at_s": 12.0}
        sim = spawn(
            [
                "sim",
                "--scene",
                "cartpole",
                "--state-hz",
                "30",
                "--camera-hz",
                "0",
                "--duration",
                "14",
                "--seed",
                "5",
                "--fault",
                json.dumps(fault),
            ],
            bus_config,
            tmp_path,
        )
        sim.wait(timeout=60)
    finally:
        out, _ = stop(worker)
        ready.clear()
        listener.join()
    faults = [e for e in events if e.category == "fault"]
    assert faults and faults[0].name == "sensor_bias"
    detected = [e for e in events if e.category == "anomaly" and e.params.get("fault") == "sensor_bias"]
    assert detected, ([(e.params, e.t_ns) for e in events if e.category == "anomaly"], faults[0].t_ns)
    first = detected[0]
    assert 0 <= first.params["delay_s"] < 1.0
    assert first.params["since_t_ns"] <= first.params["detected_t_ns"]
    assert "cart_position" in str(first.params["sensors"]) or first.params["share_cart_position"] > 0
    assert first.params["evidence"].startswith("predictions:cartpole-0.state:")
    engine = sa.create_engine(db)
    with engine.connect() as connection:
        stored = connection.execute(sa.select(EventRow).where(EventRow.category == "anomaly")).all()
    engine.dispose()
    assert any(r.params.get("fault") == "sensor_bias" for r in stored)
    assert '"anomalies"' in out
