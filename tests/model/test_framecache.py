"""A live camera stream reads each new frame once (``twin.model.framecache.FrameCache``) and gets
the latent reading every frame again would give."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from modelutil import TINY_RUN, oscillator_data

from twin.model.api import TwinModel
from twin.model.encoders import CameraEncoder, PixelKeypointEncoder
from twin.model.framecache import FrameCache
from twin.model.jepa import ModelConfig, build_model
from twin.model.pipeline import run
from twin.model.speed import model_timings


def stream(frames: int, seed: int = 0) -> np.ndarray:
    """(frames, 64, 64, 3) uint8 random frames, as a camera sends them (height, width, RGB)."""
    return np.random.default_rng(seed).integers(0, 256, (frames, 64, 64, 3), dtype=np.uint8)


def pixels(window: np.ndarray) -> torch.Tensor:
    """(n, 64, 64, 3) -> (1, n, 3, 64, 64), what the encoder reads."""
    return torch.from_numpy(window).permute(0, 3, 1, 2)[None]


@pytest.mark.parametrize("pooling", ["presence", "concat"])
def test_a_stream_reads_each_new_frame_once_and_encodes_as_reading_them_all(pooling):
    torch.manual_seed(0)
    reader = PixelKeypointEncoder(8, keypoints=4, pooling=pooling, frames=4).eval()
    cache = FrameCache(reader, size=8)
    frames = stream(12)
    with torch.no_grad():
        for end in range(4, 13):
            window = frames[end - 4 : end]
            streamed, whole = reader(cache.readings(window)), reader(pixels(window))
            assert torch.allclose(streamed, whole, atol=1e-6), end
    assert (cache.misses, cache.hits) == (12, 3 * 8)  # 4 frames first, then one new frame a step
    assert len(cache) == 8  # the 8 most recent of 12


def test_repeated_replayed_and_forgotten_frames_are_read_right():
    torch.manual_seed(1)
    reader = PixelKeypointEncoder(8, keypoints=4, pooling="presence", frames=4).eval()
    cache = FrameCache(reader, size=4)
    frames = stream(9, seed=1)
    still = np.repeat(frames[:1], 4, axis=0)  # a camera that sends the same frame four times
    with torch.no_grad():
        assert torch.allclose(reader(cache.readings(still)), reader(pixels(still)), atol=1e-6)
        assert (cache.misses, cache.hits) == (1, 3)
        for end in range(5, 10):  # frames 1..8 push frame 0 out of a cache of 4
            cache.readings(frames[end - 4 : end])
        misses = cache.misses
        replay = frames[:4]  # a replay from the start: frame 0 is read again
        assert torch.allclose(reader(cache.readings(replay)), reader(pixels(replay)), atol=1e-6)
        assert cache.misses > misses
        reader.maps[0].weight.mul_(2.0)  # new weights make the kept readings stale: clear() forgets them
        cache.clear()
        assert len(cache) == 0
        assert torch.allclose(reader(cache.readings(replay)), reader(pixels(replay)), atol=1e-6)


def test_the_cache_refuses_what_it_cannot_read():
    reader = PixelKeypointEncoder(8, keypoints=4, pooling="presence", frames=4)
    with pytest.raises(TypeError, match="PixelKeypointEncoder"):
        FrameCache(CameraEncoder(8), size=4)  # a CNN reads a pair at once: nothing to keep per frame
    with pytest.raises(ValueError, match="size=3"):
        FrameCache(reader, size=3)
    cache = FrameCache(reader, size=8)
    with pytest.raises(ValueError, match=r"\(4, H, W, 3\) uint8"):
        cache.readings(stream(3))  # too few frames
    with pytest.raises(ValueError, match="float32"):
        cache.readings(stream(4).astype(np.float32))


@pytest.fixture(scope="module")
def checkpoint():
    torch.manual_seed(0)
    return run(oscillator_data(episodes=14, steps=90), TINY_RUN, seed=3)


def camera_twin(checkpoint, reader: str) -> TwinModel:
    """The oscillator's checkpoint with an untrained camera model in its place (keypoints: 3
    frames; the CNN: a pair)."""
    n_features, n_sensors = checkpoint.features.n_features, len(checkpoint.schema.sensors)
    frames = 3 if reader == "keypoints" else 2
    config = ModelConfig(
        latent_dim=8,
        hidden=16,
        action_dim=4,
        history=3,
        camera=True,
        camera_reader=reader,
        camera_frames=frames,
    )
    torch.manual_seed(2)
    model = build_model(config, n_features, n_sensors, 1).eval()
    return TwinModel(dataclasses.replace(checkpoint, model=model))


def test_twin_model_encodes_a_stream_through_its_cache_as_a_batch_of_its_windows(checkpoint):
    twin = camera_twin(checkpoint, "keypoints")
    assert twin.frame_cache is not None and twin.frame_cache.size == 6
    episode = oscillator_data(episodes=1, steps=12, seed=4).episodes[0]
    frames = stream(13, seed=4)
    windows = [(episode.obs[end - 3 : end], frames[end - 3 : end]) for end in range(3, 14)]
    streamed = np.stack([twin.encode(obs, seen) for obs, seen in windows])  # one window at a time
    batch = twin.encode(np.stack([o for o, _ in windows]), np.stack([s for _, s in windows]))  # no cache
    assert np.allclose(streamed, batch, atol=1e-5)
    assert (twin.frame_cache.misses, twin.frame_cache.hits) == (13, 2 * 10)
    obs, seen = windows[-1]
    assert twin.forecast(obs, np.zeros((5, 1)), frames=seen).values.shape == (5, 3)
    assert twin.frame_cache.misses == 13  # the window was kept
    assert camera_twin(checkpoint, "cnn").frame_cache is None  # the CNN reads each pair whole


def test_timings_time_a_stream_step_and_a_cold_step(checkpoint):
    """With a camera, ``step_ms`` is a live stream's step (one new frame) and ``step_cold_ms``
    reads the whole window; without, only ``step_ms``. (What they measure, not how fast.)"""
    timed = model_timings(camera_twin(checkpoint, "keypoints"), candidates=4, steps=3)
    assert {"step_ms", "step_cold_ms", "rollout_ms", "rollout_read_ms"} <= set(timed)
    assert all(v > 0 for v in timed.values())
    assert set(model_timings(TwinModel(checkpoint), candidates=4, steps=3)) == {
        "step_ms",
        "rollout_ms",
        "rollout_read_ms",
    }


@pytest.mark.parametrize("reader", ["keypoints", "cnn"])
def test_an_evaluation_reads_each_test_frame_once_and_scores_as_reading_every_window(checkpoint, reader):
    """evaluate.read_frames: a keypoint reader's readings of the whole frame bank, which each
    later encode only pools (Windows.frames gives them); the same scores and diagnostics as
    reading every window's frames again. A CNN reader reads pairs whole: its windows stay."""
    from twin.model.data import make_windows
    from twin.model.encoders import FrameReadings
    from twin.model.evaluate import diagnostics, read_frames, score
    from twin.model.pipeline import forecasters

    model = camera_twin(checkpoint, reader).model
    data = oscillator_data(episodes=3, steps=40, seed=5)
    rng = np.random.default_rng(5)
    episodes = tuple(
        dataclasses.replace(e, frames=rng.integers(0, 256, (len(e.obs), 64, 64, 3), dtype=np.uint8))
        for e in data.episodes
    )
    data = dataclasses.replace(data, episodes=episodes)
    f, h = checkpoint.features, model.history
    windows = make_windows(data, f, h, 12, stride=2, frames=True)
    read = read_frames(model, windows)
    if reader == "cnn":
        assert read is windows
        return
    assert read.frame_readings is not None and windows.frame_readings is None
    assert len(read.frame_readings[0]) == len(windows.frame_bank)
    readings = read.frames(slice(0, 7), slice(0, h))  # longer stacks than the reader's: it pools the last
    assert isinstance(readings, FrameReadings) and readings.stacks.shape == (7, h)
    feats = windows.features[:7, :h]
    with torch.no_grad():
        torch.testing.assert_close(
            model.encode(feats, readings), model.encode(feats, windows.frames(slice(0, 7), slice(0, h)))
        )
    assert read.take(np.array([4, 1])).frame_readings is read.frame_readings
    sensors = [s.name for s in data.schema.sensors]
    models = forecasters(model, {}, f, h)
    expected = score(models, windows, f, sensors, horizons=(1, 10))
    got = score(models, read, f, sensors, horizons=(1, 10))
    for name in models:
        for horizon in ("1", "10"):
            assert got["nrmse"][name][horizon] == pytest.approx(expected["nrmse"][name][horizon], abs=2e-5)
    before = diagnostics(model, f, windows, checkpoint.bands, seed=0, horizons=(1, 10))
    after = diagnostics(model, f, read, checkpoint.bands, seed=0, horizons=(1, 10))
    assert after["coverage90"] == pytest.approx(before["coverage90"], abs=1e-3)
    assert after["shuffled_action_ratio_h10"] == pytest.approx(before["shuffled_action_ratio_h10"], abs=2e-3)
    assert after["latent"]["effective_rank"] == pytest.approx(before["latent"]["effective_rank"], rel=1e-4)
