"""The neural baselines' training in processes of their own (``pipeline.train_baselines``)."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
import torch
from modelutil import TINY_RUN, oscillator_data

from twin.model import pipeline
from twin.model.baselines import NeuralForecaster, SensorGRU, SensorMLP
from twin.model.losses import SensorObjective
from twin.model.train import Trainer

RUN = replace(TINY_RUN, neural_baselines=True)


def _in_this_process(cls, prepared, seed: int) -> torch.nn.Module:
    """``cls`` trained here on one thread, as a baseline process trains it."""
    f, h = prepared.features, RUN.model.history
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        model = cls(f.n_features, len(f.action_low), h, RUN.model.hidden)
        forecaster = NeuralForecaster(model, f, h)
        Trainer(
            RUN.train,
            SensorObjective(model, h),
            prepared.train,
            lambda: pipeline.validation(forecaster, prepared),
        ).fit()
    finally:
        torch.set_num_threads(threads)
    return model


def test_baselines_trained_side_by_side_equal_one_thread_training_here():
    prepared = pipeline.prepare(oscillator_data(), RUN, seed=1)
    fitted, seconds = pipeline.train_baselines(prepared, RUN, seed=1)
    assert set(fitted) == {"linear", "mlp", "gru"} and set(seconds) == set(fitted)
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
    assert train["baseline_processes"] == min(2, os.cpu_count() or 1)
    assert list(train["stages_s"]) == ["prepare", "jepa", "blend_and_bands", "baselines", "evaluate"]
    assert set(checkpoint.baselines) == {"linear", "mlp", "gru"}


class _Raises(SensorMLP):
    def forecast_features(self, *args, **kwargs):
        raise ValueError("a baseline that cannot step")


class _Dies(SensorMLP):
    def forecast_features(self, *args, **kwargs):
        os._exit(3)


@pytest.mark.fault
@pytest.mark.skipif(not hasattr(os, "fork"), reason="the patched class reaches the child by fork only")
def test_a_baseline_failing_or_dying_in_its_process_is_a_clear_error_naming_it(monkeypatch):
    prepared = pipeline.prepare(oscillator_data(episodes=6), RUN, seed=0)
    monkeypatch.setitem(pipeline.SENSOR_BASELINES, "gru", _Raises)
    with pytest.raises(
        RuntimeError, match="baseline gru: training failed in its process: a baseline that cannot step"
    ):
        pipeline.train_baselines(prepared, RUN, seed=0)
    monkeypatch.setitem(pipeline.SENSOR_BASELINES, "gru", SensorGRU)
    monkeypatch.setitem(pipeline.SENSOR_BASELINES, "mlp", _Dies)
    with pytest.raises(RuntimeError, match="baseline mlp: its training process died"):
        pipeline.train_baselines(prepared, RUN, seed=0)
