"""The simulator recorded by ``twin.recorder`` into SQLite: exactly the published frames, one
labelled episode per asset with its scene, seed, controller and injected faults."""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa
from sqlalchemy.orm import Session

from sim import faults as fl
from sim.runner import SimConfig, run_sim
from twin.recorder import Recorder, RecorderConfig
from twin.store.engine import make_engine
from twin.store.migrate import upgrade
from twin.store.models import Asset, Episode, EventRow, ObservationRow
from twin.store.writer import BatchWriter, WriterConfig


def test_recorded_database_holds_exactly_what_the_sim_published(tmp_path, bus_config):
    engine = make_engine(f"sqlite:///{tmp_path / 'rec.sqlite'}")
    upgrade(engine)
    writer = BatchWriter(engine, WriterConfig(batch_size=500)).start()
    recorder = Recorder(bus_config, writer, RecorderConfig())
    stop = threading.Event()
    summary: dict = {}
    thread = threading.Thread(target=lambda: summary.update(s=recorder.run(stop)), daemon=True)
    thread.start()
    assert recorder.ready.wait(10)
    config = SimConfig(
        scene="cartpole",
        assets=2,
        realtime=False,
        duration_s=4.0,
        seed=9,
        state_hz=60,
        camera_hz=10,
        faults=(
            ("cartpole-1", fl.SensorBias(sensor="pole_angle", bias=0.1, at_s=1.0)),
            ("", fl.Payload(link="pole", mass_kg=0.05, at_s=2.0, duration_s=1.0)),
        ),
    )
    try:
        stats = run_sim(config, bus_config)
        expected = {"obs": 0, "event": 0}
        for topic, n in stats.streams.items():
            expected[topic.split(".")[0]] += n
        deadline = time.monotonic() + 20
        while any(recorder.received[kind] < n for kind, n in expected.items()):
            assert time.monotonic() < deadline, f"recorder got {dict(recorder.received)} of {expected}"
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(60)
    result = summary["s"]
    assert result.complete and result.bus_gaps == 0 and result.duplicates == 0 and stats.dropped == 0
    assert stats.streams["obs.cartpole-0.state"] == 240 and stats.streams["obs.cartpole-1.camera"] == 40

    with Session(engine) as session:
        stored = session.execute(
            sa.select(
                Asset.name,
                ObservationRow.stream,
                sa.func.count(),
                sa.func.count(sa.distinct(ObservationRow.seq)),
                sa.func.min(ObservationRow.seq),
                sa.func.max(ObservationRow.seq),
            )
            .join(Episode, Episode.id == ObservationRow.episode_id)
            .join(Asset, Asset.id == Episode.asset_id)
            .group_by(Asset.name, ObservationRow.stream)
        ).all()
        obs = {f"obs.{asset}.{stream}": tuple(rest) for asset, stream, *rest in stored}
        sent = {topic: n for topic, n in stats.streams.items() if topic.startswith("obs.")}
        # every frame once: same count, distinct seqs 0..n-1 per stream
        assert obs == {topic: (n, n, 0, n - 1) for topic, n in sent.items()}

        events = session.execute(
            sa.select(
                EventRow.topic, sa.func.count(), sa.func.min(EventRow.seq), sa.func.max(EventRow.seq)
            ).group_by(EventRow.topic)
        ).all()
        published = {topic: (n, 0, n - 1) for topic, n in stats.streams.items() if topic.startswith("event.")}
        assert {topic: (n, low, high) for topic, n, low, high in events} == published

        episodes = session.execute(sa.select(Asset.name, Episode).join(Asset)).all()
        assert sorted(name for name, _ in episodes) == ["cartpole-0", "cartpole-1"]
        for name, episode in episodes:
            k = int(name.rsplit("-", 1)[1])
            seed = 9 * 100_003 + k
            assert (episode.scene, episode.seed, episode.controller) == ("cartpole", seed, "default")
            assert episode.end_reason == "episode_end" and episode.params["run_seed"] == 9
            faults = [f["name"] for f in episode.faults]
            assert faults == ["sensor_bias"] * k + ["payload", "payload_cleared"]
            n = stats.streams
            assert episode.n_observations == n[f"obs.{name}.state"] + n[f"obs.{name}.camera"]
            assert episode.n_events == n[f"event.{name}.marker"] + n[f"event.{name}.fault"]
