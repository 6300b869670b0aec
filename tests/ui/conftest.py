"""A real stack for the dashboard tests: bus, simulated cartpoles, recorder into a SQLite file, and a
stand-in for the twin worker (persistence forecasts on ``pred.``, one anomaly), all in-process.

Tables the worker will fill (predictions, memories) and the model registry get rows through the
store's own models and functions, derived from what was really recorded.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session
from uistack import ASSET, MODEL

from bridge import Bus, BusConfig, Event, Observation, Prediction, Publisher, Subscriber
from sim.faults import SensorBias
from sim.runner import SimConfig, run_sim
from twin.recorder import Recorder, RecorderConfig
from twin.store.engine import make_engine
from twin.store.migrate import upgrade
from twin.store.models import Asset, Episode, MemoryRow, ObservationRow, PredictionRow
from twin.store.telemetry import decode_values
from twin.store.writer import BatchWriter, WriterConfig

HORIZONS = np.array([0.1, 0.5, 1.0, 2.0])


@dataclass
class Stack:
    bus: BusConfig
    url: str
    engine: sa.Engine
    env: dict[str, str]


def persistence(origin_t_ns: int, value: np.ndarray, asset: str = ASSET) -> Prediction:
    """A forecast that the future equals now, with a band widening with the horizon."""
    mean = np.tile(value, (len(HORIZONS), 1))
    half = (0.02 + 0.2 * HORIZONS)[:, None] * (1.0 + np.abs(mean))
    return Prediction(
        asset, "state", time.time_ns(), origin_t_ns, HORIZONS, mean, mean - half, mean + half, 0.9, MODEL
    )


def worker_standin(bus: BusConfig, stop: threading.Event) -> None:
    """Publish a persistence forecast of cartpole-0 every 0.1 s and one anomaly after 1.5 s."""
    started = time.monotonic()
    anomaly_sent = False
    with (
        Subscriber(bus, (f"obs.{ASSET}.state",), name="worker-standin") as sub,
        Publisher(bus, "twin") as pub,
    ):
        last_sent = 0.0
        while not stop.is_set():
            latest = None
            message = sub.recv(timeout_s=0.05)
            for item in [message, *sub.drain()]:
                if isinstance(item, Observation):
                    latest = item
            now = time.monotonic()
            if latest is not None and now - last_sent >= 0.1:
                pub.publish(persistence(latest.t_ns, latest.values))
                last_sent = now
            if not anomaly_sent and now - started > 1.5:
                pub.publish(
                    Event(
                        ASSET,
                        time.time_ns(),
                        "anomaly",
                        "surprise_high",
                        "warning",
                        "surprise above threshold",
                    )
                )
                anomaly_sent = True


def fill_worker_tables(engine: sa.Engine) -> None:
    """Predictions (with surprise) and memories derived from the recorded observations."""
    with Session(engine) as session, session.begin():
        episode = session.execute(
            sa.select(Episode.id).join(Asset, Asset.id == Episode.asset_id).where(Asset.name == ASSET)
        ).scalar()
        rows = session.execute(
            sa.select(ObservationRow)
            .where(ObservationRow.stream == "state", ObservationRow.episode_id == episode)
            .order_by(ObservationRow.t_ns)
        ).scalars()
        samples = [(r.t_ns, decode_values(r.dtype, r.shape, r.data)) for r in rows]
        for t_ns, values in samples[::6]:
            p = persistence(t_ns, values)
            session.add(
                PredictionRow(
                    asset=ASSET, stream="state", origin_t_ns=t_ns, model=MODEL, source="twin",
                    horizons_s=HORIZONS.tolist(), level=0.9, mean=p.mean.astype("<f8").tobytes(),
                    lower=p.lower.astype("<f8").tobytes(), upper=p.upper.astype("<f8").tobytes(),
                    surprise=float(abs(values[0])),
                )
            )  # fmt: skip
        rng = np.random.default_rng(0)
        moments = [(t - 60_000_000_000 * (k + 1), v) for k, (t, v) in enumerate(samples[:5])]  # earlier days
        for k, (t_ns, values) in enumerate(moments + samples[::40]):
            key = (rng.normal(size=8) + (0 if k % 2 else 3)).astype("<f4")
            session.add(
                MemoryRow(asset=ASSET, t_ns=t_ns, kind="keyframe", model=MODEL, key=key.tobytes(),
                          context={"values": values.tolist()})
            )  # fmt: skip


def register_model(engine: sa.Engine) -> None:
    from twin.model.registry import register_model as register

    metrics = {
        "nrmse": {
            "jepa": {"1": 0.05, "10": 0.2, "50": 0.6},
            "persistence": {"1": 0.08, "10": 0.5, "50": 1.2},
        },
        "coverage90": {"1": 0.91, "10": 0.89, "50": 0.86},
        "train": {"steps": 300, "history": [{"step": 100, "seconds": 1.0, "loss": 1.0, "val": 0.9},
                                            {"step": 200, "seconds": 2.0, "loss": 0.5, "val": 0.6}]},
    }  # fmt: skip
    with Session(engine) as session, session.begin():
        register(
            session, name="cartpole", version=1, scene="cartpole", path=Path("/nonexistent/cartpole.pt"),
            schema={}, config={"latent_dim": 8}, lineage={"source": "test"}, metrics=metrics,
        )  # fmt: skip


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Bus + 2 cartpoles (a sensor-bias fault at 1 s) + recorder + worker stand-in, kept running."""
    home = tmp_path_factory.mktemp("jumeau-ui")
    url = f"sqlite:///{home / 'jumeau.sqlite'}"
    engine = make_engine(url)
    upgrade(engine)
    stop = threading.Event()
    with Bus(BusConfig.local(heartbeat_s=0.2)) as bus:
        config = bus.config
        writer = BatchWriter(engine, WriterConfig()).start()
        recorder = Recorder(config, writer, RecorderConfig())
        fault = SensorBias(sensor="pole_angle", bias=0.05, at_s=1.0)
        sim = SimConfig(scene="cartpole", assets=2, realtime=True, seed=1, faults=(("cartpole-0", fault),))
        threads = [
            threading.Thread(target=recorder.run, args=(stop,), daemon=True),
            threading.Thread(target=run_sim, args=(sim, config, stop), daemon=True),
            threading.Thread(target=worker_standin, args=(config, stop), daemon=True),
        ]
        threads[0].start()
        assert recorder.ready.wait(10)
        for thread in threads[1:]:
            thread.start()
        time.sleep(3.0)  # a short real run: episodes, a fault, predictions, an anomaly
        fill_worker_tables(engine)
        register_model(engine)
        env = {**config.env(), "JUMEAU_DB": url, "JUMEAU_HOME": str(home)}
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            yield Stack(config, url, engine, env)
        stop.set()
        for thread in threads:
            thread.join(30)
    engine.dispose()


@pytest.fixture
def ui_env(stack: Stack) -> Iterator[Stack]:
    for name, value in stack.env.items():
        assert os.environ.get(name) == value
    yield stack
