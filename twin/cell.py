"""The factory cell ``twin up`` runs by default, its scripted fault, and the models its worker needs.

The cell: the arm, the rotor and two cart-poles, each scene in its own ``twin sim`` child. The
worker needs one world model per scene; :func:`ensure_models` finds the newest one in the model
registry (``models`` table) whose checkpoint file still exists, and trains the missing ones
through the model package's own job (:func:`twin.model.jobs.train_job`) with a progress bar.
Training presets are small on purpose: ``quick`` (the default, about 2 minutes for the three
scenes on 2 cores) and ``tiny`` (seconds, for tests).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CellMember:
    """One ``twin sim`` child of the cell: ``assets`` copies of ``scene``."""

    scene: str
    assets: int = 1
    camera_hz: float = 0.0

    def __post_init__(self) -> None:
        if self.assets < 1:
            raise ValueError(f"CellMember.assets={self.assets!r} must be >= 1")
        if self.camera_hz < 0:
            raise ValueError(f"CellMember.camera_hz={self.camera_hz!r} must be >= 0 (0: no camera)")


CELL = (CellMember("arm", 1, camera_hz=5.0), CellMember("rotor", 1), CellMember("cartpole", 2, camera_hz=5.0))
"""The default factory cell: arm-0, rotor-0, cartpole-0 and cartpole-1."""

FAULT_ASSET = "cartpole-1"
FAULT = {"kind": "sensor_bias", "sensor": "pole_angle", "bias": 0.25, "ramp_s": 2.0}
"""The scripted fault: the pole-angle sensor of cartpole-1 drifts 0.25 rad off over 2 s."""


def fault_spec(at_s: float) -> str:
    """The ``twin sim --fault`` JSON of the scripted fault, starting ``at_s`` s of sim time in."""
    return json.dumps({"asset": FAULT_ASSET, **FAULT, "at_s": at_s})


@dataclass(frozen=True, slots=True)
class TrainingPreset:
    """How hard to train a missing model: generated episodes, steps, model size, time guard."""

    episodes: int
    steps: int
    max_seconds: float
    latent_dim: int = 16
    hidden: int = 64
    rollout_steps: int = 16
    batch: int = 64
    reference_runs: int = 6
    """Nominal runs the detector profile is fitted on (``twin calibrate-detector``; 0: none, the
    worker then calibrates each asset alone and false-alarms ~100x an hour on the cart-pole)."""
    reference_seconds: float = 150.0

    def __post_init__(self) -> None:
        if self.episodes < 4 or self.steps < 1 or self.max_seconds <= 0:
            raise ValueError(
                f"TrainingPreset: episodes={self.episodes!r} must be >= 4 (the split needs four), "
                f"steps={self.steps!r} >= 1, max_seconds={self.max_seconds!r} > 0"
            )
        if self.reference_runs < 0 or self.reference_runs == 1:
            raise ValueError(f"TrainingPreset.reference_runs={self.reference_runs!r} must be 0 or >= 2")


PRESETS = {
    "quick": TrainingPreset(episodes=40, steps=800, max_seconds=45.0),
    "tiny": TrainingPreset(
        episodes=8, steps=40, max_seconds=10.0, latent_dim=8, hidden=32, rollout_steps=8, reference_runs=0
    ),
}


def find_cached(engine: Engine, name: str) -> str | None:
    """``name:version`` of the newest registered model called ``name`` whose file exists."""
    from twin.store.models import ModelRow

    with Session(engine) as session:
        rows = session.query(ModelRow).filter(ModelRow.name == name).order_by(ModelRow.version.desc())
        for row in rows:
            if Path(row.path).exists():
                return f"{row.name}:{row.version}"
    return None


def train_model(scene: str, preset: TrainingPreset, engine: Engine, models_dir: Path, progress: bool) -> str:
    """Generate data through the sim, train, register; return ``name:version``."""
    import torch

    from sim.stdio import quiet_stdout
    from twin.model.jobs import DataSpec, load_data, train_job
    from twin.model.pipeline import RunConfig
    from twin.model.presets import scene_model, scene_objective
    from twin.model.train import TrainConfig

    torch.set_num_threads(2)
    with quiet_stdout():
        data = load_data(DataSpec(scene, generate=preset.episodes, seed=0))
    config = RunConfig(
        model=scene_model(scene, latent_dim=preset.latent_dim, hidden=preset.hidden),
        objective=scene_objective(scene, rollout_steps=preset.rollout_steps),
        train=TrainConfig(
            steps=preset.steps,
            batch=preset.batch,
            eval_every=max(1, preset.steps // 4),
            warmup=min(20, preset.steps // 4),
            patience=10,
            max_seconds=preset.max_seconds,
        ),
        neural_baselines=False,
        val_windows=200,
    )
    outcome = train_job(data, config, 0, scene, models_dir, engine=engine, progress=progress)
    return f"{outcome.checkpoint.name}:{outcome.checkpoint.version}"


def ensure_models(
    scenes: list[str],
    preset: TrainingPreset,
    engine: Engine,
    models_dir: Path,
    *,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> list[str]:
    """One model reference per scene: the cached one, else one trained now."""
    refs = []
    for scene in scenes:
        ref = find_cached(engine, scene)
        if ref is None:
            say(f"twin up: training a world model for {scene} (first run; cached in the registry after)")
            ref = train_model(scene, preset, engine, models_dir, progress)
            say(f"twin up: {scene} model ready: {ref}")
        if preset.reference_runs and not has_profile(engine, ref):
            fit_profile_for(ref, preset, engine, say)
        refs.append(ref)
    return refs


def has_profile(engine: Engine, ref: str) -> bool:
    """Whether model ``ref``'s checkpoint stores a detector profile that the worker's default
    detector uses (one fitted under another detector configuration, or unreadable, is refitted)."""
    from twin.model.api import checkpoint_path
    from twin.model.checkpoint import load_checkpoint
    from twin.worker.config import DetectorConfig
    from twin.worker.profile import DetectorProfile

    stored = load_checkpoint(checkpoint_path(ref, engine)).detector
    if not stored:
        return False
    try:
        return DetectorProfile.from_dict(stored).mismatch(DetectorConfig()) is None
    except (TypeError, ValueError):
        return False


def fit_profile_for(ref: str, preset: TrainingPreset, engine: Engine, say: Callable[[str], None]) -> None:
    """Fit and store ``ref``'s detector profile on the preset's nominal reference runs."""
    from sim.stdio import quiet_stdout
    from twin.worker.calibrate import ReferenceConfig, calibrate_detector

    reference = ReferenceConfig(runs=preset.reference_runs, seconds=preset.reference_seconds)
    say(
        f"twin up: fitting {ref}'s detector profile on {reference.runs} nominal runs of "
        f"{reference.seconds:g} s (once; stored with the model)"
    )
    try:
        with quiet_stdout():
            calibrate_detector(ref, reference=reference, engine=engine)
    except ValueError as exc:  # too little armed reference, say: the worker calibrates per asset
        say(f"twin up: no detector profile for {ref} ({exc}); its assets calibrate alone")
