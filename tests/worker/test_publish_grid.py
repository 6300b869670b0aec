"""Publication cadence: a shared grid, one publication per period, jitter-proof."""

from __future__ import annotations

import numpy as np

from twin.worker.loop import next_publish_t_ns


def _published(times: np.ndarray, hz: float) -> list[int]:
    due, out = 0, []
    for t in times:
        if t >= due:
            out.append(int(t))
            due = next_publish_t_ns(int(t), hz)
    return out


def test_one_publication_per_period_at_30hz_frames() -> None:
    frames = np.round(np.arange(0, 900) * 1e9 / 30).astype(np.int64) + 1_700_000_000_000_000_000
    published = _published(frames, 10.0)
    assert len(published) in (300, 301)
    assert set(np.diff(published)) <= {99_999_999, 100_000_000, 100_000_001}


def test_timestamp_jitter_neither_skips_nor_doubles() -> None:
    rng = np.random.default_rng(0)
    frames = (np.arange(0, 3000) * 1e9 / 30 + rng.normal(0, 50_000, 3000)).astype(np.int64)  # 50 us
    gaps = np.diff(_published(np.sort(frames), 10.0))
    assert gaps.min() > 60e6 and gaps.max() < 140e6  # 3 frames apart, never 2 periods


def test_assets_with_shared_timestamps_come_due_together() -> None:
    frames = np.round(np.arange(0, 300) * 1e9 / 30).astype(np.int64)
    late_start = _published(frames[7:], 10.0)  # an asset that joined 7 frames later
    early = set(_published(frames, 10.0))
    assert set(late_start[1:]) <= early


def test_a_slow_publish_rate_still_lands_on_its_grid() -> None:
    t = 12_345_678_901
    nxt = next_publish_t_ns(t, 0.5)
    assert 0 < nxt - t <= 2_000_000_000
    assert (nxt + 2_000_000) % 2_000_000_000 == 0
