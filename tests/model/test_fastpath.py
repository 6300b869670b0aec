"""The NumPy rollout mirrors the torch predictor exactly and never serves stale weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from twin.model.fastpath import MAX_ROWS, NumpyWorldModel
from twin.model.jepa import ModelConfig, build_model


def _model(seed: int = 0, **fields: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(ModelConfig(**fields), n_features=5, n_sensors=4, n_actions=2).eval()
    with torch.no_grad():  # the zero-initialised parts (FiLM, linear path) must take part too
        for p in model.parameters():
            p.add_(0.03 * torch.randn_like(p))
    return model


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"conditioning": "concat"},
        {"linear_path": True},
        {"predictor_layers": 3, "linear_path": True},
        {"predictor_layers": 1},
        {"carry_observation": False},
    ],
)
@pytest.mark.parametrize("batch,steps", [(1, 1), (3, 30), (10, 7)])
def test_numpy_rollout_equals_torch(fields: dict, batch: int, steps: int) -> None:
    model = _model(**fields)
    rng = np.random.default_rng(1)
    z = rng.normal(size=(batch, model.z_dim)).astype(np.float32)
    actions = rng.uniform(-1, 1, size=(batch, steps, 2)).astype(np.float32)
    with torch.no_grad():
        expected = model.rollout(torch.from_numpy(z), torch.from_numpy(actions)).numpy()
    got = NumpyWorldModel.from_model(model).rollout(z, actions)
    assert got.shape == expected.shape == (batch, steps, model.z_dim)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_a_changed_parameter_rebuilds_the_copy() -> None:
    model = _model()
    fast = NumpyWorldModel.from_model(model)
    assert fast.current(model) is fast
    with torch.no_grad():
        model.predictor.out.bias.add_(1.0)  # in place, as an optimiser step does
    fresh = fast.current(model)
    assert fresh is not fast
    z = np.zeros((2, model.z_dim), np.float32)
    actions = np.zeros((2, 3, 2), np.float32)
    with torch.no_grad():
        expected = model.rollout(torch.from_numpy(z), torch.from_numpy(actions)).numpy()
    np.testing.assert_allclose(fresh.rollout(z, actions), expected, rtol=1e-4, atol=1e-4)
    assert not np.allclose(fast.rollout(z, actions), expected, atol=1e-3)


def test_no_overflow_on_large_activations() -> None:
    model = _model()
    z = np.full((1, model.z_dim), 1e4, np.float32)
    with np.errstate(all="raise"):
        out = NumpyWorldModel.from_model(model).rollout(z, np.zeros((1, 2, 2), np.float32))
    assert np.isfinite(out).all()


def test_twin_model_uses_either_path_with_the_same_result(tmp_path) -> None:
    """TwinModel.predict_latents: NumPy up to MAX_ROWS rows, torch above, same numbers."""
    from twin.model.api import TwinModel

    model = _model()

    class _Features:
        @staticmethod
        def actions(a: np.ndarray) -> np.ndarray:
            return np.asarray(a, np.float32)

    twin = TwinModel.__new__(TwinModel)
    twin.model, twin.features, twin._numpy = model, _Features(), None
    rng = np.random.default_rng(2)
    z = rng.normal(size=(MAX_ROWS + 1, model.z_dim)).astype(np.float32)
    actions = rng.uniform(-1, 1, size=(MAX_ROWS + 1, 5, 2))
    large = twin.predict_latents(z, actions)
    small = twin.predict_latents(z[:4], actions[:4])
    np.testing.assert_allclose(small, large[:4], rtol=1e-4, atol=1e-4)
    assert twin._numpy is not None
    single = twin.predict_latents(z[0], actions[0])
    np.testing.assert_allclose(single, large[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "fields,hidden_columns",
    [({}, ()), ({"carry_observation": False}, ()), ({"linear_path": True}, (1, 3))],
)
def test_numpy_encode_and_read_equal_torch(fields: dict, hidden_columns: tuple[int, ...]) -> None:
    torch.manual_seed(3)
    model = build_model(ModelConfig(**fields), 5, 4, 2, hidden_columns).eval()
    rng = np.random.default_rng(4)
    window = rng.normal(size=(6, model.history, 5)).astype(np.float32)
    fast = NumpyWorldModel.from_model(model)
    with torch.no_grad():
        z = model.encode(torch.from_numpy(window)).numpy()
        latents = torch.from_numpy(rng.normal(size=(6, 3, model.z_dim)).astype(np.float32))
        features = model.read(latents).numpy()
        scale = model.error_scale(latents).numpy()
    np.testing.assert_allclose(fast.encode(window), z, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fast.read(latents.numpy()), features, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fast.error_scale(latents.numpy()), scale, rtol=1e-4, atol=1e-5)
    assert fast.read(latents.numpy()).shape == (6, 3, 5) and scale.shape == (6, 3, 4)


def test_a_camera_model_does_not_encode_in_numpy() -> None:
    model = build_model(ModelConfig(camera=True, camera_channels=4), 5, 4, 2).eval()
    fast = NumpyWorldModel.from_model(model)
    with pytest.raises(ValueError, match="camera"):
        fast.encode(np.zeros((1, 2, 5), np.float32))


def test_another_module_is_copied_afresh() -> None:
    first, second = _model(seed=0), _model(seed=1)
    fast = NumpyWorldModel.from_model(first)
    other = fast.current(second)
    assert other is not fast and other.source is second
