"""One training run, start to finish: split, normalise, train the JEPA model and every baseline,
calibrate bands, evaluate all of them on the same held-out episodes, package a checkpoint.

Everything is seeded (``torch.manual_seed`` and numpy Generators from ``RunConfig.seed``), so a
run on the same data with the same config gives the same weights (unless the wall-clock guard
of :class:`TrainConfig` stops it, which the result records).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from twin.model.baselines import (
    ConstantVelocity,
    Forecaster,
    LinearARX,
    NeuralForecaster,
    Persistence,
    SensorGRU,
    SensorMLP,
)
from twin.model.blend import MIN_WINDOWS, fit_blend
from twin.model.calibration import calibrate
from twin.model.checkpoint import Checkpoint
from twin.model.data import Dataset, FeatureMap, Splits, Windows, make_windows, split_episodes
from twin.model.evaluate import (
    HORIZONS,
    Unblended,
    band_errors,
    diagnostics,
    nrmse_table,
    observed_future,
    read_frames,
    rollouts,
    score,
)
from twin.model.jepa import JepaWorldModel, ModelConfig, build_model, camera_only_columns, phase_columns
from twin.model.losses import JepaObjective, ObjectiveConfig, SensorObjective
from twin.model.memory import keep_freed_memory
from twin.model.pool import cores, side_by_side
from twin.model.train import Logger, TrainConfig, Trainer, TrainResult

log = logging.getLogger(__name__)

EVAL_HORIZON = max(HORIZONS)
SELECT_HORIZONS = (10, 50)
"""Horizons (control steps) whose validation error chooses a run's weights unless its
``RunConfig.select_horizons`` says otherwise (and what runs stored before that field used)."""
BASELINES = ("persistence", "const_velocity", "linear", "mlp", "gru")


@dataclass(frozen=True, slots=True)
class RunConfig:
    """A full run: the model, its objective, training, and the neural baselines' budget."""

    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    baseline_train: TrainConfig | None = None
    """Training of the MLP and GRU baselines (default: ``train``); None-equivalent to skip is
    ``neural_baselines=False``."""
    neural_baselines: bool = True
    level: float = 0.9
    eval_stride: int = 3
    val_windows: int = 800
    blend: bool = True
    """Fit a horizon blend (:mod:`twin.model.blend`) on the validation episodes after training,
    before the bands are calibrated (runs stored before it existed: False)."""
    select_on: tuple[str, ...] = ()
    """Sensor names whose validation error alone chooses the JEPA's best weights and stops its
    training early (empty: every sensor). The arm's camera preset names the cubes' x and y:
    the camera part learns long after the score of all 49 sensors has flattened, and that
    score kept step 750's weights (docs/model.md, "The arm's camera")."""
    select_horizons: tuple[int, ...] = SELECT_HORIZONS
    """Horizons (control steps, each in ``1..EVAL_HORIZON``) whose validation error, averaged,
    chooses the JEPA's best weights and stops its training early. The arm's camera preset
    selects at 10 steps alone: its cubes' 50-step error is mostly pushes and the feeder, which
    no reading foresees, and that noise chose step 500's weights (probe 0.896) over later ones
    reading 0.93 (docs/model.md, "Selecting at 10 steps, and a tray for the cubes")."""

    def __post_init__(self) -> None:
        if not 0 < self.level < 1:
            raise ValueError(f"RunConfig.level={self.level!r} must be in (0, 1)")
        if isinstance(self.select_on, str):
            raise ValueError(
                f"RunConfig.select_on={self.select_on!r} must be a tuple of sensor names, not one string"
            )
        object.__setattr__(self, "select_on", tuple(self.select_on))
        for name in self.select_on:
            if not isinstance(name, str) or not name:
                raise ValueError(f"RunConfig.select_on: {name!r} is not a sensor name")
        if len(set(self.select_on)) < len(self.select_on):
            raise ValueError(f"RunConfig.select_on={self.select_on!r} names a sensor twice")
        object.__setattr__(self, "select_horizons", tuple(self.select_horizons))
        if (
            not self.select_horizons
            or len(set(self.select_horizons)) < len(self.select_horizons)
            or not all(isinstance(h, int) and 1 <= h <= EVAL_HORIZON for h in self.select_horizons)
        ):
            raise ValueError(
                f"RunConfig.select_horizons={self.select_horizons!r} must be distinct whole steps "
                f"in 1..{EVAL_HORIZON}"
            )
        if self.eval_stride < 1 or self.val_windows < 10:
            raise ValueError(
                f"RunConfig eval_stride={self.eval_stride!r} >= 1, val_windows={self.val_windows!r} >= 10"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.to_dict(),
            "objective": self.objective.to_dict(),
            "train": self.train.to_dict(),
            "baseline_train": (self.baseline_train or self.train).to_dict(),
            "neural_baselines": self.neural_baselines,
            "level": self.level,
            "eval_stride": self.eval_stride,
            "val_windows": self.val_windows,
            "blend": self.blend,
            "select_on": list(self.select_on),
            "select_horizons": list(self.select_horizons),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        return cls(
            model=ModelConfig.from_dict(d["model"]),
            objective=ObjectiveConfig.from_dict(d["objective"]),
            train=TrainConfig(**d["train"]),
            baseline_train=TrainConfig(**d["baseline_train"]),
            neural_baselines=d["neural_baselines"],
            level=d["level"],
            eval_stride=d["eval_stride"],
            val_windows=d.get("val_windows", 800),
            blend=d.get("blend", False),
            select_on=tuple(d.get("select_on", ())),
            select_horizons=tuple(d.get("select_horizons", SELECT_HORIZONS)),
        )


@dataclass(slots=True)
class Prepared:
    """A dataset split, normalised and cut into windows."""

    splits: Splits
    features: FeatureMap
    train: Windows
    val: Windows
    calib: Windows
    test: Windows


def prepare(data: Dataset, config: RunConfig, seed: int) -> Prepared:
    splits = split_episodes(data, seed)
    features = FeatureMap.fit(splits.train)
    h, camera = config.model.history, config.model.camera
    train = make_windows(splits.train, features, h, config.objective.rollout_steps, frames=camera)
    val = make_windows(splits.val, features, h, EVAL_HORIZON, stride=5, frames=camera)
    if len(val) > config.val_windows:
        pick = np.random.default_rng([seed, 3]).choice(len(val), config.val_windows, replace=False)
        val = val.take(np.sort(pick))
    calib = make_windows(splits.calib, features, h, EVAL_HORIZON, stride=config.eval_stride, frames=camera)
    test = make_windows(splits.test, features, h, EVAL_HORIZON, stride=config.eval_stride, frames=camera)
    return Prepared(splits, features, train, val, calib, test)


def validation(
    forecaster: Forecaster,
    prepared: Prepared,
    sensors: list[int] | None = None,
    horizons: tuple[int, ...] = SELECT_HORIZONS,
) -> float:
    """Mean normalised RMSE at ``horizons`` (control steps; 10 and 50 by default) on the
    validation windows (lower is better), over every sensor or the ``sensors`` (indices) given."""
    if sensors is not None and not sensors:
        raise ValueError("validation: an empty list of sensors scores nothing (None: every sensor)")
    if not horizons or not all(1 <= h <= EVAL_HORIZON for h in horizons):
        raise ValueError(f"validation: horizons={horizons!r} must be steps in 1..{EVAL_HORIZON}")
    table = nrmse_table(
        forecaster.forecast(prepared.val, EVAL_HORIZON),
        observed_future(prepared.val, forecaster.history, EVAL_HORIZON),
        prepared.features,
    )[[h - 1 for h in horizons]]
    return float((table if sensors is None else table[:, sensors]).mean())


def sensor_indices(
    names: tuple[str, ...], sensors: list[str], what: str = "RunConfig.select_on"
) -> list[int] | None:
    """Indices of ``names`` among ``sensors`` (None for no names); an unknown name is an error
    that names ``what`` asked for it."""
    if not names:
        return None
    unknown = [n for n in names if n not in sensors]
    if unknown:
        raise ValueError(f"{what}: no sensor named {unknown} (sensors: {sensors})")
    return [sensors.index(n) for n in names]


def train_jepa(
    prepared: Prepared, config: RunConfig, seed: int, logger: Logger | None = None, progress: bool = False
) -> tuple[JepaWorldModel, TrainResult]:
    torch.manual_seed(seed)
    f = prepared.features
    episodes = prepared.splits.train
    names = [s.name for s in episodes.schema.sensors]
    hidden = camera_only_columns(config.model, f, names)
    selected = sensor_indices(config.select_on, names)
    phase = phase_columns(config.model, f, episodes.schema.sensors, episodes.control_hz)
    model = build_model(config.model, f.n_features, f.n_sensors, len(f.action_low), hidden, phase)
    objective = JepaObjective(model, config.objective, f, selected)
    forecaster = NeuralForecaster(model, f, config.model.history)
    trainer = Trainer(
        config.train,
        objective,
        prepared.train,
        lambda: validation(forecaster, prepared, selected, config.select_horizons),
        logger,
        progress,
    )
    return model, trainer.fit()


def fit_model_blend(model: JepaWorldModel, prepared: Prepared, config: RunConfig) -> dict[str, Any]:
    """Fit ``model.blend`` on windows of the validation episodes (every ``eval_stride`` steps;
    the network never fitted its weights on them), cross-validated between the first and the
    second half of those episodes, and say what it chose."""
    f, h = prepared.features, config.model.history
    episodes = prepared.splits.val
    halves = [episodes.subset(range(len(episodes.episodes) // 2))] if len(episodes.episodes) > 1 else []
    halves.append(episodes.subset(range(len(episodes.episodes) // 2, len(episodes.episodes))))
    model.blend = None
    model.eval()
    predicted, present, observed = [], [], []
    for half in halves:
        try:
            windows = make_windows(
                half, f, h, EVAL_HORIZON, stride=config.eval_stride, frames=config.model.camera
            )
        except ValueError:  # no episode of this half is long enough
            continue
        for z0, z in rollouts(model, windows, EVAL_HORIZON):
            with torch.no_grad():
                predicted.append(model.read(z).numpy())
                present.append(model.read(z0).numpy())
        observed.append(windows.features[:, h:].numpy())
    n = sum(len(o) for o in observed)
    if n < MIN_WINDOWS:
        log.warning(
            "horizon blend not fitted: %d validation windows of %d steps, %d needed",
            n,
            EVAL_HORIZON,
            MIN_WINDOWS,
        )
        return {"windows": n, "skipped": f"fewer than {MIN_WINDOWS} validation windows"}
    split = (
        len(observed[0]) if len(observed) == 2 and min(len(o) for o in observed) >= MIN_WINDOWS // 2 else None
    )
    variance = prepared.train.features[:, h - 1].numpy().var(axis=0)
    blend, report = fit_blend(
        np.concatenate(predicted),
        np.concatenate(present),
        np.concatenate(observed),
        variance=variance,
        split=split,
    )
    model.blend = blend
    report["folds"] = "by episode" if split is not None else "by window"
    log.info(
        "horizon blend: %d of %d features blended; validation MSE (2-fold) %.4f, selected pulls %.4f",
        report["blended_features"],
        f.n_features,
        report["cv_mse_unblended"],
        report["cv_mse_selected"],
    )
    return report


BASELINE_THREADS = 1
"""torch threads of each neural baseline's training process. One: a sensor-space baseline's step
gains nothing from a second thread on 2 cores, so the MLP and the GRU train side by side, a core
each, and their weights do not depend on the machine's thread count."""

SENSOR_BASELINES: dict[str, type[torch.nn.Module]] = {"mlp": SensorMLP, "gru": SensorGRU}
"""The neural baselines, trained in sensor space (``SensorObjective``), each in a process of its own."""


def baseline_processes(config: RunConfig) -> int:
    """How many neural baselines train at once: one a core, within the caller's torch threads
    (``bench/model.py --threads 1`` keeps them to one core), none without them."""
    if not config.neural_baselines:
        return 0
    return max(1, min(len(SENSOR_BASELINES), cores(), torch.get_num_threads()))


def _fit_sensor_baseline(
    name: str, prepared: Prepared, config: RunConfig, seed: int, position: int | None
) -> tuple[dict[str, np.ndarray], TrainResult, int]:
    """In a baseline process: train ``name`` with :data:`BASELINE_THREADS` torch thread; its best
    weights (numpy), the training result and the thread count it ran with."""
    torch.set_num_threads(BASELINE_THREADS)
    f, h = prepared.features, config.model.history
    torch.manual_seed(seed)
    model = SENSOR_BASELINES[name](f.n_features, len(f.action_low), h, config.model.hidden)
    forecaster = NeuralForecaster(model, f, h)
    trainer = Trainer(
        config.baseline_train or config.train,
        SensorObjective(model, h),
        prepared.train,
        lambda: validation(forecaster, prepared),
        progress=position is not None,
        label=name,
        position=position,
    )
    result = trainer.fit()
    state = {key: value.numpy() for key, value in model.state_dict().items()}
    return state, result, torch.get_num_threads()


def train_baselines(
    prepared: Prepared, config: RunConfig, seed: int, progress: bool = False
) -> tuple[dict[str, torch.nn.Module], dict[str, Any]]:
    """Fit the linear ARX (least squares) and, if configured, the MLP and GRU baselines, each of
    those in a process of its own with :data:`BASELINE_THREADS` torch thread,
    :func:`baseline_processes` at a time (:func:`twin.model.pool.side_by_side`). Their weights are
    the ones training them here on one thread gives (tested); a failure in either is raised here,
    naming it. The fitted modules, and a report: ``seconds`` each, ``processes``, ``threads``."""
    f, h = prepared.features, config.model.history
    n_a = len(f.action_low)
    started = time.perf_counter()
    fitted: dict[str, torch.nn.Module] = {"linear": LinearARX(f.n_features, n_a, h).fit(prepared.train)}
    report: dict[str, Any] = {
        "seconds": {"linear": time.perf_counter() - started},
        "processes": 0,
        "threads": {},
    }
    workers = baseline_processes(config)
    if not workers:
        return fitted, report
    names = list(SENSOR_BASELINES)
    log.info("baselines %s: %d at a time, one torch thread each", " and ".join(names), workers)
    jobs = {
        f"baseline {name}": (_fit_sensor_baseline, (name, prepared, config, seed, k if progress else None))
        for k, name in enumerate(names)
    }
    done = side_by_side(jobs, workers)
    report["processes"] = workers
    for name in names:
        state, result, threads = done[f"baseline {name}"]
        weights = {key: torch.from_numpy(value) for key, value in state.items()}
        fitted.update(restore_baselines({name: weights}, f, h, config.model.hidden))
        report["seconds"][name] = result.seconds
        report["threads"][name] = threads
        log.info(
            "baseline %s: val %.4f after %d steps (%.0f s)",
            name,
            result.best_val,
            result.steps,
            result.seconds,
        )
    return fitted, report


def forecasters(
    model: JepaWorldModel, baselines: dict[str, torch.nn.Module], features: FeatureMap, history: int
) -> dict[str, Forecaster]:
    out: dict[str, Forecaster] = {
        "jepa": NeuralForecaster(model, features, history),
        "persistence": Persistence(history),
        "const_velocity": ConstantVelocity(history, features),
    }
    if model.blend is not None:
        out["jepa_unblended"] = NeuralForecaster(Unblended(model), features, history)
    for name, module in baselines.items():
        out[name] = NeuralForecaster(module, features, history)
    return out


def restore_baselines(
    states: dict[str, Any], features: FeatureMap, history: int, hidden: int
) -> dict[str, torch.nn.Module]:
    """Baseline modules from the state dicts a checkpoint stores."""
    n_a = len(features.action_low)
    out = {}
    for name, state in states.items():
        if name == "linear":
            module: torch.nn.Module = LinearARX(features.n_features, n_a, history)
        else:
            module = SENSOR_BASELINES[name](features.n_features, n_a, history, hidden)
        module.load_state_dict(state)
        out[name] = module.eval()
    return out


def evaluate_all(
    model: JepaWorldModel,
    baselines: dict[str, torch.nn.Module],
    prepared: Prepared,
    checkpoint_bands,
    sensors: list[str],
    seed: int,
) -> dict[str, Any]:
    models = forecasters(model, baselines, prepared.features, model.history)
    test = read_frames(model, prepared.test)  # a keypoint camera's frames read once, not per use
    metrics = score(models, test, prepared.features, sensors)
    metrics.update(diagnostics(model, prepared.features, test, checkpoint_bands, seed))
    metrics["test_windows"] = len(prepared.test)
    metrics["test_episodes"] = len(prepared.splits.test.episodes)
    return metrics


def run(
    data: Dataset, config: RunConfig, seed: int, logger: Logger | None = None, progress: bool = False
) -> Checkpoint:
    """Train, calibrate and evaluate on ``data``: a checkpoint with its metrics (not yet saved).
    Keeps freed tensor memory in the process for the next step (:mod:`twin.model.memory`)."""
    keep_freed_memory()
    started = time.perf_counter()
    stages: dict[str, float] = {}
    mark = started

    def stage(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        stages[name] = round(now - mark, 1)
        mark = now

    prepared = prepare(data, config, seed)
    stage("prepare")
    log.info(
        "windows: train %d, val %d, calib %d, test %d",
        len(prepared.train),
        len(prepared.val),
        len(prepared.calib),
        len(prepared.test),
    )
    model, result = train_jepa(prepared, config, seed, logger, progress)
    stage("jepa")
    blend_report = fit_model_blend(model, prepared, config) if config.blend else None
    error, scale = band_errors(model, prepared.features, prepared.calib, EVAL_HORIZON)
    bands = calibrate(error, scale, config.level)
    stage("blend_and_bands")
    baselines, baseline_report = train_baselines(prepared, config, seed, progress)
    stage("baselines")
    sensors = [s.name for s in data.schema.sensors]
    metrics = evaluate_all(model, baselines, prepared, bands, sensors, seed)
    stage("evaluate")
    if blend_report is not None:
        metrics["blend"] = blend_report
    metrics["train"] = {
        "train_s": round(result.seconds, 1),
        "baseline_train_s": {k: round(v, 1) for k, v in baseline_report["seconds"].items()},
        "baseline_processes": baseline_report["processes"],
        "baseline_threads": baseline_report["threads"],
        "best_val": result.best_val,
        "select_on": list(config.select_on),
        "best_step": result.best_step,
        "steps": result.steps,
        "stopped_by": result.stopped_by,
        "stages_s": stages,
        "total_s": round(time.perf_counter() - started, 1),
        "history": result.history[-5:],
    }
    lineage = {
        **data.lineage,
        "split_seed": seed,
        "episodes_train": len(prepared.splits.train.episodes),
        "episodes_test": len(prepared.splits.test.episodes),
        "transitions": data.transitions,
    }
    return Checkpoint(
        model=model,
        features=prepared.features,
        schema=data.schema,
        bands=bands,
        config={**config.to_dict(), "seed": seed},
        lineage=lineage,
        metrics=metrics,
        baselines={name: module.state_dict() for name, module in baselines.items()},
        control_hz=data.control_hz,
    )
