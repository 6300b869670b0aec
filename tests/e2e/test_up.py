"""`twin up`, the README's main job: it starts, shows live data, runs the worker on models it
trains itself (tiny preset here), and stops cleanly."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bridge import BusConfig, BusUnavailable, ControlClient

FREE_PORTS = ["--pub", "tcp://127.0.0.1:0", "--sub", "tcp://127.0.0.1:0", "--control", "tcp://127.0.0.1:0"]
STATUS = re.compile(r"up \d\d:\d\d \| cartpole-0 (\d+)/s \| gaps (\d+) \| rejects (\d+)")
CELL_STATUS = re.compile(
    r"up \d\d:\d\d \| arm-0 \d+/s cartpole-0 \d+/s cartpole-1 \d+/s rotor-0 \d+/s "
    r"\| predictions (\d+)/s \| gaps (\d+)"
)


def _start(home: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "JUMEAU_HOME": str(home)}
    return subprocess.Popen(
        [sys.executable, "-m", "twin.cli", "up", *FREE_PORTS, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def _lines(process: subprocess.Popen[str], until: re.Pattern[str], timeout_s: float) -> list[str]:
    """stdout lines up to and including the first that matches ``until`` (bounded wait)."""
    seen: list[str] = []
    done = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            seen.append(line.strip())
            if until.search(line):
                break
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(timeout_s), f"no line matching {until.pattern!r} within {timeout_s} s: {seen}"
    return seen


@pytest.mark.e2e
def test_twin_up_shows_live_data_without_loss_and_stops_by_itself(tmp_path):
    process = _start(tmp_path, "--scene", "cartpole", "--no-worker", "--no-ui", "--duration", "6")
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0, out
    ready = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    assert ready["event"] == "up_ready"
    statuses = [STATUS.search(line) for line in out.splitlines()]
    statuses = [m for m in statuses if m]
    assert len(statuses) >= 3, out
    rate, gaps, rejects = (int(x) for x in statuses[-1].groups())
    assert rate > 0 and gaps == 0 and rejects == 0, statuses[-1].group(0)
    assert (tmp_path / "logs" / "bus.log").exists() and (tmp_path / "logs" / "sim.log").exists()


@pytest.mark.e2e
@pytest.mark.fault
@pytest.mark.slow
def test_the_cell_trains_its_models_runs_the_worker_and_ctrl_c_stops_every_process(tmp_path):
    process = _start(tmp_path, "--training", "tiny", "--no-ui", "--fault-at", "0")
    lines = _lines(process, CELL_STATUS, timeout_s=150)
    models = json.loads(next(line for line in lines if '"models_ready"' in line))["models"]
    assert sorted(ref.split(":")[0] for ref in models) == ["arm", "cartpole", "rotor"]
    ready = json.loads(next(line for line in lines if '"up_ready"' in line))
    predictions, gaps = (int(x) for x in CELL_STATUS.search(lines[-1]).groups())
    assert predictions > 0 and gaps == 0, lines[-1]
    control = ControlClient(ready["JUMEAU_BUS_CONTROL"], timeout_s=2.0)
    assert control.request("ping")["ok"]
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0
    started = time.monotonic()
    with pytest.raises(BusUnavailable):  # the bus child is gone too, not orphaned
        control.request("ping", timeout_s=1.0)
    control.close()
    assert time.monotonic() - started < 5
    worker_log = (tmp_path / "logs" / "worker.log").read_text()
    assert "worker stopped" in worker_log  # stopped cleanly, store flushed

    again = _start(tmp_path, "--no-ui", "--duration", "3")  # second run: the models are cached
    out, _ = again.communicate(timeout=120)
    assert again.returncode == 0, out
    assert "training a world model" not in out
    assert json.loads(next(x for x in out.splitlines() if '"models_ready"' in x))["models"] == models


def test_up_config_rejects_nonsense():
    from twin.up import UpConfig

    with pytest.raises(ValueError, match="assets"):
        UpConfig(assets=0)
    with pytest.raises(ValueError, match="duration"):
        UpConfig(duration_s=-1)
    with pytest.raises(ValueError, match="training"):
        UpConfig(training="huge")
    assert [m.scene for m in UpConfig().members()] == ["arm", "rotor", "cartpole"]
    assert UpConfig().bus == BusConfig()
