"""Helpers for worker tests: a tiny trained model, processes on the test bus, reading the store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bridge import BusConfig


def train_tiny_model(path: Path, seed: int = 1) -> Path:
    """A small cartpole world model trained through the model package's own API (seconds)."""
    from twin.model.checkpoint import save_checkpoint
    from twin.model.generate import GenerateConfig, generate
    from twin.model.jepa import ModelConfig
    from twin.model.pipeline import RunConfig, run
    from twin.model.train import TrainConfig

    data = generate(GenerateConfig(scene="cartpole", episodes=8, steps=150, seed=seed))
    # no tight wall-clock guard: the fixture must be the same model on a loaded machine
    train = TrainConfig(steps=60, batch=64, eval_every=30, warmup=10, max_seconds=300, seed=seed)
    config = RunConfig(
        model=ModelConfig(latent_dim=16, hidden=48),
        train=train,
        neural_baselines=False,
        val_windows=50,
    )
    checkpoint = run(data, config, seed=seed)
    checkpoint.name, checkpoint.version = "cartpole-tiny", 1
    return save_checkpoint(checkpoint, path)


def spawn(args: list[str], bus: BusConfig, home: Path, **env: str) -> subprocess.Popen[str]:
    environment = {**os.environ, **bus.env(), "JUMEAU_HOME": str(home), "PYTHONUNBUFFERED": "1", **env}
    return subprocess.Popen(
        [sys.executable, "-m", "twin.cli", *args],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_json(proc: subprocess.Popen[str], event: str, timeout_s: float = 60.0) -> dict:
    """Read stdout lines until a JSON line with ``"event": event`` (or fail with stderr)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if data.get("event") == event:
            return data
    proc.kill()
    err = proc.stderr.read() if proc.stderr else ""
    raise AssertionError(f"no {event} line from {proc.args}: rc={proc.poll()}\n{err[-3000:]}")


def stop(proc: subprocess.Popen[str], timeout_s: float = 30.0) -> tuple[str, str]:
    if proc.poll() is None:
        proc.terminate()
    out, err = proc.communicate(timeout=timeout_s)
    return out, err
