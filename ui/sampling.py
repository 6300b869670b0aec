"""Bounded reads of long recordings: at most ``max_points`` rows, whatever the time range.

A day of one asset at 30 Hz is 2.6 million observations (and a worker predicting at 10 Hz adds
0.9 million predictions). Counting them, or filtering them with ``seq % k``, visits every row.
Instead, :func:`sample_series` reads the first ``max_points + 1`` rows of the range (one index
range scan, enough when the range is short), and otherwise cuts the range into ``max_points``
equal time buckets and fetches, with one statement, the first row of each bucket: one index seek
per bucket on an index that starts with the equality columns and ends with the time column
(``(episode_id, t_ns)`` for observations, ``(asset, stream, model, origin_t_ns)`` for
predictions). Plain SQL (a recursive CTE and a correlated subquery) that SQLite and PostgreSQL
both run (the bucket width is cast to BIGINT: PostgreSQL types a width under 2^31 ns as a 32-bit
integer, and ``k * width`` then overflows for ranges of ~36-71 minutes at 2,000 points).
:func:`sample_rows` is the observations' case.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import sqlalchemy as sa


@dataclass(frozen=True)
class Series:
    """Rows of ``table`` with ``keys`` equal to given values (and ``extra``, a fixed condition),
    in the order of ``t_column``; ``columns`` are what is read. Every name here is a constant of
    this package, never user input: values travel as bound parameters."""

    table: str
    keys: tuple[str, ...]
    t_column: str
    columns: tuple[sa.ColumnClause[Any], ...]
    extra: str = ""

    def _where(self, alias: str = "") -> str:
        prefix = f"{alias}." if alias else ""
        parts = [f"{prefix}{key} = :key_{key}" for key in self.keys]
        if self.extra:
            parts.append(self.extra.replace("{t}.", prefix))
        return " AND ".join(parts) or "1 = 1"

    @cached_property
    def statements(self) -> tuple[sa.TextClause, sa.TextClause, sa.TextClause]:
        """(first rows of the range, its newest time, the first row of each bucket)."""
        names = ", ".join(c.name for c in self.columns)
        t, where = self.t_column, self._where()
        first = sa.text(
            f"SELECT {names} FROM {self.table} WHERE {where} AND {t} >= :t0 AND {t} <= :t1 "
            f"ORDER BY {t} LIMIT :limit"
        ).columns(*self.columns)
        last = sa.text(f"SELECT max({t}) FROM {self.table} WHERE {where} AND {t} >= :t0 AND {t} <= :t1")
        buckets = sa.text(
            "WITH RECURSIVE buckets(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM buckets WHERE k + 1 < :n) "
            f"SELECT {names} FROM {self.table} WHERE {where} AND {t} IN ("
            f"  SELECT (SELECT o.{t} FROM {self.table} o"
            f"          WHERE {self._where('o')}"
            f"            AND o.{t} >= :t0 + k * CAST(:width AS BIGINT)"
            f"            AND o.{t} < :t0 + (k + 1) * CAST(:width AS BIGINT) AND o.{t} <= :t1"
            f"          ORDER BY o.{t} LIMIT 1)"
            "  FROM buckets) "
            f"ORDER BY {t}"
        ).columns(*self.columns)
        return first, last, buckets


OBSERVATIONS = Series(
    "observations",
    ("episode_id", "stream"),
    "t_ns",
    (
        sa.column("t_ns", sa.BigInteger),
        sa.column("dtype", sa.String),
        sa.column("shape", sa.JSON),
        sa.column("data", sa.LargeBinary),
    ),
)


PREDICTIONS = Series(
    "predictions",
    ("asset", "stream", "model"),
    "origin_t_ns",
    (
        sa.column("origin_t_ns", sa.BigInteger),
        sa.column("horizons_s", sa.JSON),
        sa.column("level", sa.Float),
        sa.column("mean", sa.LargeBinary),
        sa.column("lower", sa.LargeBinary),
        sa.column("upper", sa.LargeBinary),
        sa.column("model", sa.String),
    ),
)
SURPRISE = Series(
    "predictions",
    ("asset", "model"),
    "origin_t_ns",
    (sa.column("origin_t_ns", sa.BigInteger), sa.column("surprise", sa.Float)),
    extra="{t}.surprise IS NOT NULL",
)
"""The predictions of one model of a stream, and that model's stored surprise (the dashboard's
History and Asset pages)."""


def sample_series(
    connection: sa.Connection,
    series: Series,
    key_values: Mapping[str, Any],
    t0_ns: int,
    t1_ns: int,
    max_points: int,
) -> Sequence[Any]:
    """Rows of ``series`` with ``key_values`` in ``[t0, t1]``, in time order: all of them when
    there are at most ``max_points``, else the first row of each of ``max_points`` equal time
    buckets (at most one row per time)."""
    if max_points < 1:
        raise ValueError(f"max_points={max_points!r} must be >= 1")
    first, last, buckets = series.statements
    params = {f"key_{k}": key_values[k] for k in series.keys} | {"t0": t0_ns, "t1": t1_ns}
    head = connection.execute(first, {**params, "limit": max_points + 1}).all()
    if len(head) <= max_points:
        return head
    start = int(getattr(head[0], series.t_column))
    newest = connection.execute(last, params).scalar()
    span = max(1, int(newest) - start + 1)
    width = -(-span // max_points)
    rows = connection.execute(buckets, {**params, "t0": start, "n": max_points, "width": width}).all()
    seen: set[int] = set()
    out = []
    for row in rows:  # rows sharing a time (two streams of one asset): keep the first of each
        t = getattr(row, series.t_column)
        if t not in seen:
            seen.add(t)
            out.append(row)
    return out


def sample_rows(
    connection: sa.Connection, episode_id: int, stream: str, t0_ns: int, t1_ns: int, max_points: int
) -> Sequence[Any]:
    """Observation rows ``(t_ns, dtype, shape, data)`` of a stream in ``[t0, t1]``, in time
    order: all of them when there are at most ``max_points``, else the first sample of each of
    ``max_points`` equal time buckets."""
    return sample_series(
        connection, OBSERVATIONS, {"episode_id": episode_id, "stream": stream}, t0_ns, t1_ns, max_points
    )
