"""The live feed's buffers: bounded whatever the uptime, in time order, decimated predictions."""

from __future__ import annotations

import numpy as np

from bridge import Prediction
from ui.analysis import horizon_errors, surprise_series
from ui.config import UiConfig
from ui.live import LiveFeed, VectorRing, asset_status


def test_ring_keeps_the_newest_samples_in_order_in_fixed_memory():
    ring = VectorRing(capacity=100, width=2)
    before = ring.values.nbytes + ring.t_ns.nbytes
    for i in range(1000):
        ring.append(i * 10, np.array([i, -i], dtype=float))
    t, v = ring.window()
    assert list(t) == [i * 10 for i in range(900, 1000)]
    assert v[-1].tolist() == [999, -999]
    assert ring.values.nbytes + ring.t_ns.nbytes == before
    assert list(ring.window(since_ns=9950)[0]) == [9950, 9960, 9970, 9980, 9990]


def test_predictions_are_decimated_and_bounded():
    feed = LiveFeed(UiConfig(max_predictions=5, prediction_hz=10.0))
    horizons = np.array([0.1, 1.0])
    for k in range(200):  # 100 Hz for 2 s
        mean = np.zeros((2, 1))
        feed._predict(Prediction("a", "state", 1, k * 10_000_000, horizons, mean, mean - 1, mean + 1))
    kept = feed.predictions("a", "state")
    assert len(kept) == 5
    assert np.diff([p.origin_t_ns for p in kept]).min() >= 100_000_000
    assert feed.latest_prediction("a", "state").origin_t_ns == 199 * 10_000_000


def test_surprise_and_horizon_errors_against_observations():
    feed = LiveFeed(UiConfig())
    horizons = np.array([0.5, 1.0])
    for k in range(10):
        mean = np.full((2, 1), 1.0)
        feed._predict(Prediction("a", "s", 1, k * 100_000_000, horizons, mean, mean - 0.5, mean + 0.5))
    t = np.arange(0, 3_000_000_000, 10_000_000)
    values = np.where(t < 1_200_000_000, 1.0, 2.0)[:, None]  # reality leaves the band at 1.2 s
    when, score = surprise_series(feed.predictions("a", "s"), t, values)
    assert score[when < 1_200_000_000].max() == 0.0 and score[when > 1_200_000_000].min() == 2.0
    stats = {e.horizon_s: e for e in horizon_errors(feed.predictions("a", "s"), t, values)}
    assert set(stats) == {0.5, 1.0} and 0 < stats[1.0].coverage[0] < 1


def test_status_follows_data_age_and_heartbeats():
    assert asset_status(0.5, None) == "live"
    assert asset_status(10.0, None) == "stale"
    assert asset_status(None, 1.0) == "stale"
    assert asset_status(120.0, 60.0) == "offline"
    assert asset_status(None, None) == "offline"
