"""Save/load round trip, schema checks, the registry, the public API, determinism, conformal bands."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from modelutil import TINY_RUN, oscillator_data, oscillator_schema

from bridge import ActuatorSpec
from twin.model.api import TwinModel
from twin.model.calibration import calibrate
from twin.model.checkpoint import (
    CheckpointError,
    SchemaMismatch,
    check_schema,
    load_checkpoint,
    save_checkpoint,
)
from twin.model.pipeline import run
from twin.model.train import TrainConfig

TINY = TINY_RUN


@pytest.fixture(scope="module")
def checkpoint():
    torch.manual_seed(0)
    return run(oscillator_data(episodes=14, steps=90), TINY, seed=3)


def test_round_trip_gives_identical_predictions(checkpoint, tmp_path):
    path = save_checkpoint(checkpoint, tmp_path / "m.pt")
    loaded = load_checkpoint(path)
    window = oscillator_data(episodes=1, steps=20, seed=9).episodes[0].obs[:3]
    actions = np.linspace(-2, 2, 12)[:, None]
    a, b = TwinModel(checkpoint).forecast(window, actions), TwinModel(loaded).forecast(window, actions)
    assert np.array_equal(a.values, b.values) and np.array_equal(a.high, b.high)
    assert loaded.config == checkpoint.config and loaded.lineage == checkpoint.lineage
    assert loaded.schema == checkpoint.schema


def test_schema_mismatch_is_a_clear_error(checkpoint, tmp_path):
    path = save_checkpoint(checkpoint, tmp_path / "m.pt")
    load_checkpoint(path, oscillator_schema(asset="another-asset"))  # asset name may differ
    schema = oscillator_schema()
    renamed = dataclasses.replace(schema, sensors=(schema.sensors[1], schema.sensors[0], schema.sensors[2]))
    with pytest.raises(SchemaMismatch, match="sensors"):
        load_checkpoint(path, renamed)
    wider = dataclasses.replace(schema, actuators=(ActuatorSpec("torque", "N*m", -5.0, 5.0),))
    with pytest.raises(SchemaMismatch, match="actuators"):
        check_schema(checkpoint.schema, wider)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pt"):
        load_checkpoint(tmp_path / "junk.pt")


def test_api_forecast_bands_and_surprise(checkpoint):
    model = TwinModel(checkpoint)
    episode = oscillator_data(episodes=1, steps=40, seed=5).episodes[0]
    window, actions = episode.obs[:3], episode.actions[2:12]
    forecast = model.forecast(window, actions)
    d = checkpoint.model.z_dim  # 8 learned + 5 carried features (3 sensors, the angle as sin, cos too)
    assert forecast.values.shape == (10, 3) and forecast.latents.shape == (10, d) and d == 8 + 5
    assert np.all(forecast.low <= forecast.values) and np.all(forecast.values <= forecast.high)
    batch = model.encode(np.stack([window, window]))
    assert batch.shape == (2, d) and np.allclose(batch[0], model.encode(window), atol=1e-6)
    surprise = model.surprise(forecast, 1, episode.obs[3], obs_window=episode.obs[1:4])
    assert set(surprise["sensor"]) == {"angle", "rate", "position"} and surprise["latent"] >= 0
    with pytest.raises(ValueError, match="history=3"):
        model.encode(episode.obs[:5])


def test_training_is_deterministic_under_a_seed():
    data = oscillator_data(episodes=14, steps=90)
    config = dataclasses.replace(TINY, train=TrainConfig(steps=12, batch=16, eval_every=6, warmup=2))
    a, b = run(data, config, seed=1), run(data, config, seed=1)
    for (name, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    assert a.metrics["nrmse"] == b.metrics["nrmse"]


def test_conformal_bands_cover_their_level():
    rng = np.random.default_rng(0)
    scale = rng.uniform(0.5, 2.0, (20000, 5, 2))
    error = rng.standard_normal((20000, 5, 2)) * scale
    bands = calibrate(error[:10000], scale[:10000], 0.9)
    coverage = bands.coverage(error[10000:], scale[10000:])
    assert coverage.shape == (5, 2) and np.all(np.abs(coverage - 0.9) < 0.015)
    with pytest.raises(ValueError, match="at least 10"):
        calibrate(error[:5], scale[:5])


def test_registry_round_trip(checkpoint, tmp_path):
    from sqlalchemy.orm import Session

    from twin.model.jobs import resolve
    from twin.model.registry import find_matching, find_model, next_version, register_model
    from twin.store import make_engine, upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade(engine)
    path = save_checkpoint(checkpoint, tmp_path / "osc-v1.pt")
    with Session(engine) as session:
        assert next_version(session, "osc") == 1
        for version in (1, 2):
            register_model(
                session,
                name="osc",
                version=version,
                scene="oscillator",
                path=path,
                schema={},
                config=checkpoint.config,
                lineage=checkpoint.lineage,
                metrics={"v": version},
            )
        session.commit()
        assert next_version(session, "osc") == 3
        assert find_model(session, "osc").version == 2
        assert find_model(session, "osc:1").metrics == {"v": 1}
        assert find_model(session, "nope") is None
        # "trained by the same config": a config holding a tuple is found although JSON stores a list
        config = {**checkpoint.config, "model": {**checkpoint.config["model"], "camera_only": ()}}
        register_model(
            session,
            name="osc",
            version=3,
            scene="oscillator",
            path=path,
            schema={},
            config=json.loads(json.dumps(config)),
            lineage=checkpoint.lineage,
            metrics={},
        )
        session.commit()
        assert find_matching(session, "oscillator", config, checkpoint.lineage).version == 3
        other = {**config, "seed": config["seed"] + 1}
        assert find_matching(session, "oscillator", other, checkpoint.lineage) is None
    assert resolve("osc:1", engine) == path
    assert TwinModel.load("osc", engine=engine).history == 3
