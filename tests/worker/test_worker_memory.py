"""``twin memory search --asset A --like TIME`` on what a real worker remembered.

The asset holds one still pose (X), then another (Y), then X again; operator notes are published
in each. Asked what looks like a moment of the second X, the search must rank every remembered X
moment above every Y moment.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import sqlalchemy as sa
from feedutil import Feed, cartpole_schema, feeding, rows, wait_until
from workerutil import spawn, stop, wait_json

from bridge import Event, Observation, Publisher
from twin.model.checkpoint import load_checkpoint
from twin.store.models import MemoryRow

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

POSE_X = np.array([1.0, 0.0, 0.05, 0.0])
POSE_Y = np.array([-2.0, 0.0, -0.4, 0.0])
NOTES = {30: "X", 60: "X", 120: "Y", 150: "Y", 200: "X", 265: "X"}
"""step -> pose of the operator notes; regimes: X for steps < 90, Y up to 180, then X again."""
QUERY_STEP = 265


def _pose(step: int) -> np.ndarray:
    return POSE_Y if 90 <= step < 180 else POSE_X


def test_memory_search_finds_the_similar_past_moments(tiny_model, bus_config, tmp_path):
    db = f"sqlite:///{tmp_path / 'twin.sqlite'}"
    args = ["worker", "--model", str(tiny_model), "--db", db, "--keyframe-every", "1000"]
    # one keyframe (the first step) and the notes are the memories: the detector is still
    # calibrating when the run ends, so the pose changes raise no anomaly memories
    args += ["--calibration-steps", "400"]
    with Publisher(bus_config, "feed") as pub:
        feed = Feed(pub, {"pole": cartpole_schema(tiny_model, "pole")})

        def still(step: int, frame: Observation) -> Observation:
            return Observation(frame.asset, frame.stream, frame.t_ns, _pose(step).copy(), frame.schema_id)

        def note(step: int) -> None:
            if step in NOTES:
                pub.publish(Event("pole", feed.t_ns(step), "note", "operator", message=f"pose {NOTES[step]}"))

        feed.tamper["pole"] = still
        feed.after_step = note
        worker = spawn(args, bus_config, tmp_path)
        try:
            wait_json(worker, "worker_ready")
            feed.announce()
            assert pub.wait_subscribed("obs.pole.", 10)
            with feeding(feed, rate_hz=90, max_steps=QUERY_STEP + 10):
                wait_until(lambda: feed.step > QUERY_STEP + 5, 60, "the feed to pass the last note")
            notes = lambda: rows(db, sa.select(MemoryRow.t_ns).where(MemoryRow.kind == "note"))  # noqa: E731
            wait_until(lambda: len(notes()) == len(NOTES), 30, "every note remembered")
        finally:
            stop(worker)
        assert worker.returncode == 0

    like = str(feed.t_ns(QUERY_STEP))
    command = ["memory", "search", "--asset", "pole", "--like", like, "--k", "10", "--db", db]
    search = subprocess.run(
        [sys.executable, "-m", "twin.cli", *command], capture_output=True, text=True, timeout=60, check=False
    )
    assert search.returncode == 0, search.stderr
    moments = [json.loads(line) for line in search.stdout.splitlines()]

    def pose(moment: dict) -> str:
        return "Y" if 90 <= feed.step_at(moment["t_ns"]) < 180 else "X"

    # the query's own moment (and the 2 s around it) is left out; every other memory is ranked;
    # the keyframe is the first step with a full observation window (the model's history)
    first = load_checkpoint(tiny_model).model.history - 1
    assert {m["t_ns"] for m in moments} == {feed.t_ns(s) for s in NOTES if s != QUERY_STEP} | {
        feed.t_ns(first)
    }
    ranked = [pose(m) for m in moments]
    assert ranked == sorted(ranked), ranked  # every X before every Y
    assert moments[0]["similarity"] > moments[-1]["similarity"]
    assert all(m["kind"] in ("note", "keyframe") for m in moments)
    assert all(m["context"].get("note", "pose X").endswith(pose(m)) for m in moments)
