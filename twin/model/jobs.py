"""The two jobs behind ``twin train`` and ``twin eval`` (and ``bench/model.py``), CLI-free.

``train_job``: data (generated through the sim, or recorded in the store) -> :func:`pipeline.run`
-> checkpoint under ``<home>/models/<name>-v<version>.pt`` -> a row in the model registry.
``eval_job``: checkpoint -> the same held-out episodes (regenerated from the lineage, or
reloaded by id) -> every model and baseline scored -> PNG plot -> metrics back in the registry.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from twin.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint, schema_to_dict
from twin.model.data import Dataset
from twin.model.generate import GenerateConfig, generate
from twin.model.pipeline import (
    EVAL_HORIZON,
    RunConfig,
    evaluate_all,
    forecasters,
    prepare,
    restore_baselines,
    run,
)
from twin.model.train import Logger

log = logging.getLogger(__name__)


def code_version() -> str:
    """Hash of the model package's sources and of the simulator's scenes and camera, which make
    the generated data: "trained by the same code on the same kind of data"."""
    digest = hashlib.sha256()
    import sim as simulator

    sim = Path(simulator.__file__).parent
    paths = [*Path(__file__).parent.glob("*.py"), *(sim / "scenes").glob("*.py"), sim / "camera.py"]
    for path in sorted(paths):
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class DataSpec:
    """Where training data comes from: ``generate`` episodes of the sim, or the store."""

    scene: str
    generate: int = 0
    steps: int = 0
    from_db: bool = False
    episode_ids: tuple[int, ...] = ()
    asset: str | None = None
    camera: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.from_db == (self.generate > 0):
            raise ValueError("DataSpec: give exactly one of generate=N (> 0) or from_db=True")


def load_data(spec: DataSpec, engine: Engine | None = None) -> Dataset:
    if spec.generate:
        config = GenerateConfig(spec.scene, spec.generate, spec.steps, spec.seed, camera=spec.camera)
        return generate(config)
    from twin.model.recorded import load_recorded

    return load_recorded(
        _engine(engine),
        asset=spec.asset,
        scene=None if spec.episode_ids or spec.asset else spec.scene,
        episode_ids=list(spec.episode_ids) or None,
        camera=spec.camera,
    )


def data_from_lineage(lineage: dict[str, Any], engine: Engine | None = None) -> Dataset:
    """The exact dataset a checkpoint was trained on (regenerated, or reloaded by episode id)."""
    if lineage.get("source") == "generated":
        return generate(
            GenerateConfig(
                lineage["scene"],
                lineage["episodes"],
                lineage["steps"],
                lineage["seed"],
                lineage["control_hz"],
                lineage["camera"],
                lineage["push_max"],
                lineage.get("action_rate", 0.0),
            )
        )
    from twin.model.recorded import load_recorded

    return load_recorded(
        _engine(engine),
        episode_ids=lineage["episode_ids"],
        control_hz=lineage["control_hz"],
        camera=lineage["camera"],
    )


def _engine(engine: Engine | None) -> Engine:
    if engine is not None:
        return engine
    from twin.settings import database_url
    from twin.store import make_engine, upgrade

    engine = make_engine(database_url())
    upgrade(engine)
    return engine


@dataclass(slots=True)
class TrainOutcome:
    checkpoint: Checkpoint
    path: Path
    registry_id: int


def train_job(
    data: Dataset,
    config: RunConfig,
    seed: int,
    name: str,
    models_dir: Path,
    engine: Engine | None = None,
    logger: Logger | None = None,
    progress: bool = False,
) -> TrainOutcome:
    """Train and evaluate on ``data``, save the checkpoint, register it; return where it went."""
    from twin.model.registry import next_version, register_model

    checkpoint = run(data, config, seed, logger, progress)
    checkpoint.lineage["code"] = code_version()
    engine = _engine(engine)
    with Session(engine) as session:
        version = next_version(session, name)
        checkpoint.name, checkpoint.version = name, version
        path = save_checkpoint(checkpoint, models_dir / f"{name}-v{version}.pt")
        row = register_model(
            session,
            name=name,
            version=version,
            scene=data.lineage.get("scene"),
            path=path,
            schema=schema_to_dict(data.schema),
            config=checkpoint.config,
            lineage=checkpoint.lineage,
            metrics=summary_metrics(checkpoint.metrics),
        )
        session.commit()
        row_id = row.id
    return TrainOutcome(checkpoint, path, row_id)


def summary_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """What the registry row keeps (everything but the per-dimension latent stds)."""
    out = {k: v for k, v in metrics.items() if k != "latent"}
    out["latent"] = {k: v for k, v in metrics.get("latent", {}).items() if k != "std_per_dim"}
    return out


def resolve(ref: str, engine: Engine | None = None) -> Path:
    """A checkpoint path from a path or a registry reference (``name`` / ``name:version``)."""
    path = Path(ref)
    if path.exists():
        return path
    from twin.model.registry import find_model

    with Session(_engine(engine)) as session:
        row = find_model(session, ref)
        if row is None:
            raise LookupError(f"{ref!r} is neither a checkpoint file nor a registered model")
        return Path(row.path)


def eval_job(
    ref: str, plot_path: Path | None = None, engine: Engine | None = None, data: Dataset | None = None
) -> dict[str, Any]:
    """Re-evaluate a checkpoint on its held-out test episodes; returns the metrics."""
    path = resolve(ref, engine)
    checkpoint = load_checkpoint(path)
    config = checkpoint.config
    run_config = RunConfig.from_dict(config)
    seed = int(config["seed"])
    started = time.perf_counter()
    data = data or data_from_lineage(checkpoint.lineage, engine)
    prepared = prepare(data, run_config, seed)
    history = checkpoint.model.history
    baselines = restore_baselines(checkpoint.baselines, prepared.features, history, run_config.model.hidden)
    sensors = [s.name for s in checkpoint.schema.sensors]
    metrics = evaluate_all(checkpoint.model, baselines, prepared, checkpoint.bands, sensors, seed)
    metrics["eval_s"] = round(time.perf_counter() - started, 1)
    if plot_path is not None:
        metrics["plot"] = str(plot_futures_for(checkpoint, baselines, prepared, plot_path))
    if Path(ref) != path or engine is not None:
        from twin.model.registry import find_model, update_metrics

        with Session(_engine(engine)) as session:
            row = find_model(session, f"{checkpoint.name}:{checkpoint.version}")
            if row is not None:
                update_metrics(session, row, {"eval": summary_metrics(metrics)})
                session.commit()
    return metrics


def plot_futures_for(checkpoint: Checkpoint, baselines: dict, prepared, path: Path) -> Path:
    from twin.model.evaluate import predict_with_scale
    from twin.model.plots import plot_futures

    test, history = prepared.test, checkpoint.model.history
    row = int(np.argmax(np.abs(test.obs[:, history:, 0] - test.obs[:, history - 1 : history, 0]).max(axis=1)))
    one = test.take(np.array([row]))
    predicted, scale = predict_with_scale(checkpoint.model, checkpoint.features, one, EVAL_HORIZON)
    half = checkpoint.bands.half_width(scale, checkpoint.features.std)
    models = forecasters(checkpoint.model, baselines, checkpoint.features, history)
    others = {
        name: models[name].forecast(one, EVAL_HORIZON)[0]
        for name in ("persistence", "linear", "mlp")
        if name in models
    }
    schema = checkpoint.schema
    return plot_futures(
        path,
        [s.name for s in schema.sensors],
        [s.unit for s in schema.sensors],
        one.obs[0, :history],
        one.obs[0, history:],
        predicted[0],
        predicted[0] - half[0],
        predicted[0] + half[0],
        others,
        checkpoint.features.periodic,
        checkpoint.control_hz,
        f"{checkpoint.name}:{checkpoint.version} on a held-out episode ({EVAL_HORIZON} steps at "
        f"{checkpoint.control_hz:g} Hz)",
    )
