"""``twin record`` as a real process: records a publisher, stops on SIGTERM, flushes, exits 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import sqlalchemy as sa
from storeutil import ASSET, publish_episode, stored, vector_schema

from bridge import BusConfig, Publisher
from twin.store.engine import make_engine


def test_record_command_flushes_and_exits_cleanly_on_sigterm(bus_config: BusConfig, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'recorded.sqlite'}"
    env = {**os.environ, **bus_config.env(), "JUMEAU_HOME": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "twin.cli", "record", "--db", url, "--asset", ASSET],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with Publisher(bus_config, "sim") as pub:
            pub.announce(vector_schema())
            assert pub.wait_subscribed(f"obs.{ASSET}.", 20), "recorder never subscribed"
            counts = publish_episode(pub, 200)
        engine = make_engine(url)
        deadline = time.monotonic() + 20
        while True:
            try:
                if stored(engine) == counts:
                    break
            except sa.exc.OperationalError:
                pass  # tables not there yet
            assert time.monotonic() < deadline, "recorder did not store the frames in time"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["event"] == "recording_done" and summary["complete"]
    assert summary["received"] == {"obs": counts["obs"], "act": counts["act"], "event": counts["event"]}
    assert stored(engine) == counts
    engine.dispose()
