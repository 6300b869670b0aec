"""Model checkpoints: weights, normalisation, schema, configs, bands, lineage, metrics in one file.

A checkpoint is a ``torch.save`` of plain containers (tensors, lists, numbers, strings), read back
with ``weights_only=True``: loading never unpickles code. :func:`check_schema` is what makes a
model refuse a stream it was not trained for (different sensors, units, order or actuators).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bridge import ActuatorSpec, SensorSpec, StreamSchema
from twin.model.blend import HorizonBlend
from twin.model.calibration import ConformalBands
from twin.model.data import FeatureMap
from twin.model.jepa import JepaWorldModel, ModelConfig, build_model, camera_only_columns, phase_columns

FORMAT = "jumeau-world-model/1"


class SchemaMismatch(ValueError):
    """A stream's schema differs from the one a model was trained on (names what differs)."""


class CheckpointError(ValueError):
    """A file that is not a readable Jumeau world-model checkpoint."""


def _num(x: float) -> float | None:
    return None if math.isinf(x) else float(x)


def _inf(x: float | None, sign: float) -> float:
    return sign * math.inf if x is None else float(x)


def schema_to_dict(schema: StreamSchema) -> dict[str, Any]:
    return {
        "asset": schema.asset,
        "stream": schema.stream,
        "rate_hz": schema.rate_hz,
        "sensors": [
            {"name": s.name, "unit": s.unit, "low": _num(s.low), "high": _num(s.high)} for s in schema.sensors
        ],
        "actuators": [
            {"name": a.name, "unit": a.unit, "low": _num(a.low), "high": _num(a.high)}
            for a in schema.actuators
        ],
        "description": schema.description,
    }


def schema_from_dict(d: dict[str, Any]) -> StreamSchema:
    sensors = tuple(
        SensorSpec(s["name"], s["unit"], _inf(s["low"], -1), _inf(s["high"], 1)) for s in d["sensors"]
    )
    actuators = tuple(
        ActuatorSpec(a["name"], a["unit"], _inf(a["low"], -1), _inf(a["high"], 1)) for a in d["actuators"]
    )
    return StreamSchema(
        asset=d["asset"],
        stream=d["stream"],
        kind="vector",
        dtype="<f8",
        shape=(len(sensors),),
        rate_hz=float(d["rate_hz"]),
        sensors=sensors,
        actuators=actuators,
        description=d.get("description", ""),
    )


def check_schema(trained: StreamSchema, stream: StreamSchema) -> None:
    """Raise :class:`SchemaMismatch` unless ``stream`` has the trained sensors and actuators
    (same names, order, units; actuator bounds equal). The asset name may differ."""
    problems = []
    want = [(s.name, s.unit) for s in trained.sensors]
    got = [(s.name, s.unit) for s in stream.sensors]
    if want != got:
        problems.append(f"sensors (name, unit) {got} != trained {want}")
    want_a = [(a.name, a.unit, a.low, a.high) for a in trained.actuators]
    got_a = [(a.name, a.unit, a.low, a.high) for a in stream.actuators]
    if want_a != got_a:
        problems.append(f"actuators (name, unit, low, high) {got_a} != trained {want_a}")
    if problems:
        raise SchemaMismatch(
            f"stream {stream.asset}.{stream.stream} does not match the model: " + "; ".join(problems)
        )


@dataclass(slots=True)
class Checkpoint:
    """Everything a loaded model needs; ``config`` holds "model", "objective", "train" dicts."""

    model: JepaWorldModel
    features: FeatureMap
    schema: StreamSchema
    bands: ConformalBands
    config: dict[str, Any]
    lineage: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    baselines: dict[str, Any] = field(default_factory=dict)
    """State dicts of the fitted baselines (``linear``, ``mlp``, ``gru``) for ``twin eval``."""
    name: str = ""
    version: int = 0
    control_hz: float = 30.0
    detector: dict[str, Any] = field(default_factory=dict)
    """The anomaly detector's reference profile (:class:`twin.worker.profile.DetectorProfile`
    as a dict; empty: none), written by ``twin calibrate-detector``."""


def save_checkpoint(checkpoint: Checkpoint, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "name": checkpoint.name,
        "version": checkpoint.version,
        "control_hz": checkpoint.control_hz,
        "state_dict": checkpoint.model.state_dict(),
        "features": checkpoint.features.to_dict(),
        "schema": schema_to_dict(checkpoint.schema),
        "bands": checkpoint.bands.to_dict(),
        "config": checkpoint.config,
        "lineage": checkpoint.lineage,
        "metrics": checkpoint.metrics,
        "baselines": checkpoint.baselines,
        "detector": checkpoint.detector,
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: Path | str, stream: StreamSchema | None = None) -> Checkpoint:
    """Read a checkpoint; with ``stream``, raise :class:`SchemaMismatch` if it does not fit."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch raises several types for a bad file; name the file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a {FORMAT} checkpoint")
    schema = schema_from_dict(payload["schema"])
    if stream is not None:
        check_schema(schema, stream)
    features = FeatureMap.from_dict(payload["features"])
    config = ModelConfig.from_dict(payload["config"]["model"])
    hidden = camera_only_columns(config, features, [s.name for s in schema.sensors])
    phase = phase_columns(config, features, schema.sensors, payload["control_hz"])
    model = build_model(config, features.n_features, features.n_sensors, len(schema.actuators), hidden, phase)
    if "blend.weights" in payload["state_dict"]:
        model.blend = HorizonBlend(payload["state_dict"]["blend.weights"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return Checkpoint(
        model=model,
        features=features,
        schema=schema,
        bands=ConformalBands.from_dict(payload["bands"]),
        config=payload["config"],
        lineage=payload["lineage"],
        metrics=payload["metrics"],
        baselines=payload["baselines"],
        name=payload["name"],
        version=payload["version"],
        control_hz=payload["control_hz"],
        detector=payload.get("detector") or {},
    )
