"""The neural baselines' training in processes of their own (``pipeline.train_baselines``,
``pool.side_by_side``)."""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import replace

import pytest
import torch
from modelutil import TINY_RUN, oscillator_data

from twin.model import pipeline
from twin.model.baselines import NeuralForecaster, SensorGRU, SensorMLP
from twin.model.losses import SensorObjective
from twin.model.pool import cores, side_by_side
from twin.model.train import Trainer

RUN = replace(TINY_RUN, neural_baselines=True)
FORKED = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="a patched class reaches the child by fork (Linux) only"
)


def _in_this_process(cls, prepared, seed: int) -> torch.nn.Module:
    """``cls`` trained here on one thread, as a baseline process trains it."""
    f, h = prepared.features, RUN.model.history
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        model = cls(f.n_features, len(f.action_low), h, RUN.model.hidden)
        forecaster = NeuralForecaster(model, f, h)
        objective = SensorObjective(model, h)
        Trainer(RUN.train, objective, prepared.train, lambda: pipeline.validation(forecaster, prepared)).fit()
    finally:
        torch.set_num_threads(threads)
    return model


def test_baselines_trained_side_by_side_equal_one_thread_training_here():
    prepared = pipeline.prepare(oscillator_data(), RUN, seed=1)
    fitted, report = pipeline.train_baselines(prepared, RUN, seed=1)
    assert set(fitted) == {"linear", "mlp", "gru"} and set(report["seconds"]) == set(fitted)
    assert report["threads"] == {"mlp": pipeline.BASELINE_THREADS, "gru": pipeline.BASELINE_THREADS}
    assert report["processes"] == min(2, cores(), torch.get_num_threads())
    for name, cls in (("mlp", SensorMLP), ("gru", SensorGRU)):
        here = _in_this_process(cls, prepared, seed=1).state_dict()
        there = fitted[name].state_dict()
        assert not fitted[name].training
        assert here.keys() == there.keys()
        for key in here:
            assert torch.equal(here[key], there[key]), f"{name}.{key} differs from one-thread training here"
    # and the run records them with its stages
    checkpoint = pipeline.run(oscillator_data(), RUN, seed=1)
    train = checkpoint.metrics["train"]
    assert set(train["baseline_train_s"]) == {"linear", "mlp", "gru"}
    assert train["baseline_processes"] == report["processes"]
    assert list(train["stages_s"]) == ["prepare", "jepa", "blend_and_bands", "baselines", "evaluate"]
    assert set(checkpoint.baselines) == {"linear", "mlp", "gru"}


def test_baselines_keep_to_the_callers_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert pipeline.baseline_processes(RUN) == 1
    finally:
        torch.set_num_threads(threads)
    assert pipeline.baseline_processes(TINY_RUN) == 0  # no neural baselines


class _Raises(SensorMLP):
    def forecast_features(self, *args, **kwargs):
        raise ValueError("a baseline that cannot step")


class _Dies(SensorMLP):
    def forecast_features(self, *args, **kwargs):
        os._exit(3)


class _Hangs(SensorMLP):
    def forecast_features(self, *args, **kwargs):
        threading.Event().wait()


@pytest.mark.fault
@FORKED
@pytest.mark.timeout(120)
@pytest.mark.parametrize("failing", ["mlp", "gru"])
def test_a_baseline_failing_or_dying_is_named_and_stops_the_other_at_once(monkeypatch, failing):
    """The other baseline never finishes (it waits forever): the error must not wait for it."""
    prepared = pipeline.prepare(oscillator_data(episodes=6), RUN, seed=0)
    other = "gru" if failing == "mlp" else "mlp"
    monkeypatch.setitem(pipeline.SENSOR_BASELINES, other, _Hangs)
    monkeypatch.setitem(pipeline.SENSOR_BASELINES, failing, _Raises)
    message = f"baseline {failing}: failed in its process: ValueError: a baseline that cannot step"
    with pytest.raises(RuntimeError, match=message):
        pipeline.train_baselines(prepared, RUN, seed=0)
    monkeypatch.setitem(pipeline.SENSOR_BASELINES, failing, _Dies)
    with pytest.raises(RuntimeError, match=f"baseline {failing}: its process died \\(exit code 3"):
        pipeline.train_baselines(prepared, RUN, seed=0)
    assert not [p for p in __import__("multiprocessing").active_children() if p.name.startswith("jumeau-")]


def _square(x: int) -> int:
    return x * x


def _fails(x: int) -> int:
    raise KeyError(x)


def test_side_by_side_returns_results_by_name_in_any_number_of_workers():
    jobs = {f"job {k}": (_square, (k,)) for k in range(5)}
    for workers in (1, 2, 5):
        assert side_by_side(jobs, workers) == {f"job {k}": k * k for k in range(5)}
    with pytest.raises(RuntimeError, match="job 7: failed in its process: KeyError: 7"):
        side_by_side({"job 1": (_square, (1,)), "job 7": (_fails, (7,))}, 1)
    with pytest.raises(ValueError, match="workers=0"):
        side_by_side(jobs, 0)
