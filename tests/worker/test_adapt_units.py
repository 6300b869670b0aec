"""The parts of online adaptation that need no process: the nominal buffer's runs and actions,
the anomaly-overlap rule, the CPU duty cycle and the configuration's checks."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from twin.worker.adapt import Adaptation, NominalBuffer, _cut, _Gate
from twin.worker.config import AdaptConfig

STEP = 33_333_333
MAX_DT = round(1.5 * STEP)


def _obs(k: int) -> np.ndarray:
    return np.array([k, -k], dtype=np.float64)


def _act(k: int) -> np.ndarray:
    return np.array([float(k)])


def test_bus_actions_are_held_from_their_step_and_runs_split_at_missed_steps():
    buffer = NominalBuffer(100)
    for k in range(10):
        buffer.add(k * STEP, k, _obs(k), _act(k), True, MAX_DT)
    for k in range(12, 20):  # steps 10 and 11 were left out
        buffer.add(k * STEP, k, _obs(k), _act(k), True, MAX_DT)
    first, second = buffer.segments(until_t_ns=10**15)
    assert first.t_ns.tolist() == [k * STEP for k in range(10)]
    assert first.actions[:, 0].tolist() == list(range(9))  # the action held from k leads to k + 1
    assert second.obs[0].tolist() == _obs(12).tolist() and second.steps == 7
    assert not first.inferred


def test_inferred_actions_belong_to_the_transition_that_led_to_their_step():
    buffer = NominalBuffer(100)
    buffer.add(0, 0, _obs(0), _act(0), False, MAX_DT)
    buffer.add(STEP, 1, _obs(1), _act(1), False, MAX_DT)
    buffer.add(2 * STEP, 2, _obs(2), None, False, MAX_DT)  # unknown: ends the run
    buffer.add(3 * STEP, 3, _obs(3), _act(3), False, MAX_DT)
    buffer.add(4 * STEP, 4, _obs(4), _act(4), False, MAX_DT)
    first, second = buffer.segments(until_t_ns=10**15)
    assert first.actions[:, 0].tolist() == [1.0] and first.inferred
    assert second.t_ns.tolist() == [2 * STEP, 3 * STEP, 4 * STEP]
    assert second.actions[:, 0].tolist() == [3.0, 4.0]


def test_a_time_gap_splits_and_purge_forgets_every_later_step():
    buffer = NominalBuffer(100)
    for k in range(5):
        buffer.add(k * STEP, k, _obs(k), _act(k), True, MAX_DT)
    buffer.add(10 * STEP, 5, _obs(5), _act(5), True, MAX_DT)  # next step number, but 6 periods later
    assert [s.steps for s in buffer.segments(10**15)] == [4]  # the lone step makes no transition
    assert buffer.purge_since(3 * STEP) == 3
    (only,) = buffer.segments(10**15)
    assert only.t_ns.tolist() == [0, STEP, 2 * STEP]
    assert buffer.segments(until_t_ns=STEP, min_steps=2) == []


def test_capacity_keeps_the_newest_steps():
    buffer = NominalBuffer(4)
    for k in range(10):
        buffer.add(k * STEP, k, _obs(k), _act(k), True, MAX_DT)
    assert len(buffer) == 4
    (only,) = buffer.segments(10**15)
    assert only.t_ns.tolist() == [6 * STEP, 7 * STEP, 8 * STEP, 9 * STEP]


def test_holdout_is_the_newest_part_of_each_asset():
    buffer = NominalBuffer(100)
    for k in range(41):
        buffer.add(k * STEP, k, _obs(k), _act(k), True, MAX_DT)
    train, held = _cut(buffer.segments(10**15), 0.25)
    assert sum(s.steps for s in train) == 30 and sum(s.steps for s in held) == 10
    assert train[-1].t_ns[-1] == held[0].t_ns[0] == 30 * STEP  # the cut step ends one, starts the other
    assert held[0].t_ns[-1] == 40 * STEP


def test_data_overlapping_a_flagged_anomaly_is_refused(tmp_path):
    adaptation = Adaptation(AdaptConfig(guard_s=1.0, min_steps=10), None, tmp_path)
    adaptation.gates["a"] = _Gate(intervals=[[10 * STEP, 20 * STEP], [40 * STEP, None]])
    assert not adaptation.flagged_overlap("a", [[0, 9 * STEP]])
    assert not adaptation.flagged_overlap("a", [[20 * STEP, 39 * STEP]])  # the guard ends at 20
    assert adaptation.flagged_overlap("a", [[0, 10 * STEP]])
    assert adaptation.flagged_overlap("a", [[19 * STEP, 25 * STEP]])
    assert adaptation.flagged_overlap("a", [[0, 5 * STEP], [100 * STEP, 200 * STEP]])  # still going
    assert not adaptation.flagged_overlap("b", [[0, 10**12]])


def test_a_job_needs_fresh_data_and_no_anomaly_in_progress(tmp_path):
    """A job on the data of the previous one would register the same model again (seen as v6,
    v8, v10 while an asset stayed in an anomaly): it waits for ``min_steps`` newer steps."""
    from types import SimpleNamespace

    adaptation = Adaptation(AdaptConfig(guard_s=0.0, min_steps=10, buffer_steps=100), None, tmp_path)
    buffer = adaptation.buffers["a"] = NominalBuffer(100)
    asset = SimpleNamespace(asset="a", anomaly=None)

    def fill(steps: range) -> None:
        for k in steps:
            buffer.add(k * STEP, k, _obs(k), _act(k), True, MAX_DT)

    fill(range(0, 9))
    assert adaptation.ready([asset]) == {}  # 8 transitions: fewer than min_steps
    fill(range(9, 20))
    data = adaptation.ready([asset])
    assert sum(s.steps for s in data["a"]) == 19
    adaptation._used["a"] = max(int(s.t_ns[-1]) for s in data["a"])  # what _start records
    assert adaptation.ready([asset]) == {}  # the same data again: no job
    fill(range(20, 29))
    assert adaptation.ready([asset]) == {}  # 9 newer steps: not yet
    fill(range(29, 31))
    assert sum(s.steps for s in adaptation.ready([asset])["a"]) == 30
    asset.anomaly = object()
    assert adaptation.ready([asset]) == {}


_BUDGET_PROBE = """
import json, time
from twin.worker.adapt import CpuBudget
budget = CpuBudget(0.05)
for _ in range(3):
    deadline = time.process_time() + 0.02
    while time.process_time() < deadline:
        pass
    budget.throttle()
print(json.dumps({"slept_s": budget.slept_s, "cpu_s": budget.cpu_s, "wall_s": budget.wall_s}))
"""


def test_cpu_budget_keeps_cpu_time_under_its_fraction_of_wall_time():
    # In a fresh process, as the adaptation job runs: the budget counts the whole process's CPU
    # time, and pytest's process carries other tests' threads. 5% of a core: even a machine
    # loaded tenfold gives this process more, so it must sleep.
    done = subprocess.run(
        [sys.executable, "-c", _BUDGET_PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    budget = json.loads(done.stdout.strip().splitlines()[-1])
    assert budget["slept_s"] > 0
    assert budget["cpu_s"] <= 0.05 * budget["wall_s"] + 1e-3


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("cpu_fraction", 0.0, "cpu_fraction"),
        ("cpu_fraction", 1.5, "cpu_fraction"),
        ("min_steps", 5000, "min_steps"),
        ("holdout", 1.0, "holdout"),
        ("train_steps", 0, "train_steps"),
        ("guard_s", float("nan"), "guard_s"),
        ("nice", 40, "nice"),
    ],
)
def test_bad_configuration_is_refused_with_its_name(field, value, message):
    with pytest.raises(ValueError, match=message):
        AdaptConfig(**{field: value})
