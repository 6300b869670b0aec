"""Timestamps for humans: bus/SQL ``t_ns`` (UTC ns) as local wall-clock time or as sim seconds."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

LOCAL = "local time"
SIM = "sim time (s)"
AXES = (LOCAL, SIM)


def local_zone_name() -> str:
    return datetime.now().astimezone().tzname() or "local"


def to_local(t_ns: np.ndarray | list[int]) -> pd.DatetimeIndex:
    """Naive local datetimes (what plotly draws as is) for UTC ns timestamps."""
    zone = datetime.now().astimezone().tzinfo
    stamps = pd.to_datetime(np.asarray(t_ns, dtype=np.int64), unit="ns", utc=True)
    return stamps.tz_convert(zone).tz_localize(None)


def to_local_ms(t_ns: np.ndarray | list[int]) -> np.ndarray:
    """Local wall-clock time as float milliseconds since the epoch, what a plotly ``date`` axis
    draws as is. Numbers travel to the browser as one typed array (8 bytes a sample) where
    datetimes travel as ISO strings (about 30 bytes each, parsed one by one)."""
    t = np.asarray(t_ns, dtype=np.int64)
    if not t.size:
        return np.zeros(0)
    first, last = (datetime.fromtimestamp(int(x) / 1e9).astimezone().utcoffset() for x in (t[0], t[-1]))
    if first != last or first is None:  # a daylight-saving change inside the range: per sample
        return to_local(t).asi8 / 1e6
    return (t + int(first.total_seconds() * 1e9)) / 1e6


def to_axis(t_ns: np.ndarray, axis: str, origin_ns: int) -> np.ndarray:
    """x values for ``axis``: local time in ms since the epoch (for a ``date`` axis, see
    :func:`axis_type`), or seconds since ``origin_ns`` (sim time)."""
    if axis == SIM:
        return (np.asarray(t_ns, dtype=np.int64) - origin_ns) / 1e9
    return to_local_ms(t_ns)


def axis_type(axis: str) -> str:
    """The plotly x-axis type that draws :func:`to_axis` values: ``date`` or ``linear``."""
    return "linear" if axis == SIM else "date"


def axis_title(axis: str, origin_ns: int) -> str:
    if axis == SIM:
        return f"sim time (s since {format_local(origin_ns)})"
    return f"time ({local_zone_name()})"


def format_local(t_ns: int | None, with_date: bool = True) -> str:
    """One timestamp as ``YYYY-MM-DD HH:MM:SS.mmm`` local time ('' for None/0)."""
    if not t_ns:
        return ""
    stamp = datetime.fromtimestamp(t_ns / 1e9).astimezone()
    text = stamp.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S")
    return f"{text}.{stamp.microsecond // 1000:03d}"
