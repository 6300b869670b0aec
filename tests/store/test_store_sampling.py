"""The dashboard's bounded reads (``ui.sampling``) on SQLite and PostgreSQL: at most
``max_points`` rows whatever the range, the first row of each equal time bucket, in time order,
one model's rows only, and every row when the range holds few."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from twin.store.models import PredictionRow
from ui.sampling import SURPRISE, sample_series

STEP = 100_000_000  # 10 Hz


@pytest.fixture
def filled(engine: sa.Engine) -> sa.Engine:
    """1,000 predictions of model a:1 (origins 0, 0.1 s, ...; surprise = k, None every 7th) and
    1,000 of b:1 at the same origins (surprise = -k)."""
    blob = np.zeros((1, 2)).tobytes()
    rows = [
        {
            "asset": "pole", "stream": "state", "origin_t_ns": k * STEP, "model": model, "source": "w",
            "horizons_s": [0.1], "level": 0.9, "mean": blob, "lower": blob, "upper": blob,
            "surprise": None if model == "a:1" and k % 7 == 0 else sign * float(k),
        }
        for model, sign in (("a:1", 1), ("b:1", -1))
        for k in range(1000)
    ]  # fmt: skip
    with engine.begin() as connection:
        connection.execute(sa.insert(PredictionRow.__table__), rows)
    return engine


def test_a_long_range_gives_the_first_row_of_each_bucket(filled: sa.Engine) -> None:
    with filled.connect() as connection:
        rows = sample_series(connection, SURPRISE, {"asset": "pole", "model": "a:1"}, 0, 999 * STEP, 50)
    t = np.array([r.origin_t_ns for r in rows])
    surprise = np.array([r.surprise for r in rows])
    # the range starts at its first row (origin 1: 0 has no surprise) and ends at 999; 50 equal
    # buckets of ceil((998 steps + 1 ns) / 50) ns; from each, its first origin with a surprise
    width = -(-(998 * STEP + 1) // 50)
    firsts = [-(-(STEP + b * width) // STEP) for b in range(50)]
    expected = [k if k % 7 else k + 1 for k in firsts]
    assert len(rows) == 50 and np.all(np.diff(t) > 0)
    assert (t // STEP).tolist() == expected
    assert surprise.tolist() == [float(k) for k in expected]  # model a only: no negative values


def test_a_short_range_gives_every_row_and_max_points_is_checked(filled: sa.Engine) -> None:
    with filled.connect() as connection:
        b = {"asset": "pole", "model": "b:1"}
        rows = sample_series(connection, SURPRISE, b, 10 * STEP, 29 * STEP, 50)
        assert [r.surprise for r in rows] == [-float(k) for k in range(10, 30)]
        assert sample_series(connection, SURPRISE, {"asset": "pole", "model": "c:1"}, 0, 10**12, 50) == []
        with pytest.raises(ValueError, match="max_points=0"):
            sample_series(connection, SURPRISE, {"asset": "pole", "model": "a:1"}, 0, 10**12, 0)
