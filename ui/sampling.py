"""Bounded reads of long recordings: at most ``max_points`` samples, whatever the time range.

A day of one asset at 30 Hz is 2.6 million rows. Counting them, or filtering them with
``seq % k``, visits every row. Instead, :func:`sample_rows` reads the first ``max_points + 1``
rows of the range (one index range scan, enough when the range is short), and otherwise cuts the
range into ``max_points`` equal time buckets and fetches, with one statement, the first sample of
each bucket: one index seek per bucket on ``(episode_id, t_ns)``. Plain SQL (a recursive CTE and
a correlated subquery) that SQLite and PostgreSQL both run.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

COLUMNS = "t_ns, dtype, shape, data"
TYPED = (
    sa.column("t_ns", sa.BigInteger),
    sa.column("dtype", sa.String),
    sa.column("shape", sa.JSON),
    sa.column("data", sa.LargeBinary),
)

_FIRST = sa.text(
    f"SELECT {COLUMNS} FROM observations "
    "WHERE episode_id = :episode AND stream = :stream AND t_ns >= :t0 AND t_ns <= :t1 "
    "ORDER BY t_ns LIMIT :limit"
).columns(*TYPED)

_BUCKETS = sa.text(
    "WITH RECURSIVE buckets(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM buckets WHERE k + 1 < :n) "
    f"SELECT {COLUMNS} FROM observations WHERE episode_id = :episode AND stream = :stream AND t_ns IN ("
    "  SELECT (SELECT o.t_ns FROM observations o"
    "          WHERE o.episode_id = :episode AND o.stream = :stream"
    "            AND o.t_ns >= :t0 + k * :width AND o.t_ns < :t0 + (k + 1) * :width AND o.t_ns <= :t1"
    "          ORDER BY o.t_ns LIMIT 1)"
    "  FROM buckets) "
    "ORDER BY t_ns"
).columns(*TYPED)


def sample_rows(
    connection: sa.Connection, episode_id: int, stream: str, t0_ns: int, t1_ns: int, max_points: int
) -> list[Any]:
    """Rows ``(t_ns, dtype, shape, data)`` of a stream in ``[t0, t1]``, in time order: all of them
    when there are at most ``max_points``, else the first sample of each of ``max_points`` equal
    time buckets."""
    if max_points < 1:
        raise ValueError(f"max_points={max_points!r} must be >= 1")
    params = {"episode": episode_id, "stream": stream, "t0": t0_ns, "t1": t1_ns}
    head = connection.execute(_FIRST, {**params, "limit": max_points + 1}).all()
    if len(head) <= max_points:
        return head
    first = int(head[0].t_ns)
    last = connection.execute(
        sa.text(
            "SELECT max(t_ns) FROM observations WHERE episode_id = :episode AND t_ns >= :t0 AND t_ns <= :t1"
        ),
        params,
    ).scalar()
    span = max(1, int(last) - first + 1)
    width = -(-span // max_points)
    rows = connection.execute(_BUCKETS, {**params, "t0": first, "n": max_points, "width": width}).all()
    seen: set[int] = set()
    out = []
    for row in rows:  # two streams could share a t_ns: keep the first of each
        if row.t_ns not in seen:
            seen.add(row.t_ns)
            out.append(row)
    return out
