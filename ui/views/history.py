"""History / time travel: replay a recorded range (or the moments around an event) with the twin's
predictions against what happened, per-horizon error statistics, and two runs side by side."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from ui import queries
from ui.analysis import horizon_errors, horizon_slice, horizons_of
from ui.plots import compare_figure, horizon_error_figure, sensor_figure, surprise_figure
from ui.resources import config
from ui.timefmt import format_local
from ui.views.common import store_error, store_tables, time_axis

EVENT_SPAN_S = 15.0
ALIGN = {"start": "", "first fault": "fault", "first anomaly": "anomaly"}
"""How two compared runs are synchronised: at their starts, or at their first fault/anomaly."""


def episode_label(row: pd.Series) -> str:
    end = row["ended_t_ns"] if pd.notna(row["ended_t_ns"]) else None
    length = f"{(end - row['started_t_ns']) / 1e9:.0f} s" if end else "open"
    start = format_local(int(row["started_t_ns"]))
    return f"#{row['id']} {row['asset']} {start} ({length}, {row['scene'] or '?'})"


def pick_range(url: str, episodes: pd.DataFrame) -> tuple[pd.Series, int, int] | None:
    """The episode and ``[t0, t1]`` ns chosen by time range or by event."""
    mode = st.radio("Travel to", ["a time range", "an event"], horizontal=True, key="history-mode")
    if mode == "an event":
        events = queries.event_table(url, categories=("anomaly", "fault", "note", "marker"))
        events = events[events["asset"].isin(episodes["asset"])] if not events.empty else events
        if events.empty:
            st.info("No recorded events yet.")
            return None
        labels = [
            f"{format_local(int(r.t_ns))} {r.asset} {r.category}: {r.name}" for r in events.itertuples()
        ]
        chosen = events.iloc[labels.index(st.selectbox("Event", labels, key="history-event"))]
        t = int(chosen["t_ns"])
        mine = episodes[(episodes["asset"] == chosen["asset"]) & (episodes["started_t_ns"] <= t)]
        if mine.empty:
            st.info("That event lies outside every recorded episode.")
            return None
        return mine.iloc[0], t - int(EVENT_SPAN_S * 1e9), t + int(EVENT_SPAN_S * 1e9)
    labels = [episode_label(row) for _, row in episodes.iterrows()]
    episode = episodes.iloc[labels.index(st.selectbox("Episode", labels, key="history-episode"))]
    start = int(episode["started_t_ns"])
    if pd.notna(episode["ended_t_ns"]):
        end = int(episode["ended_t_ns"])
    else:  # still recording: up to its newest sample
        end = queries.episode_last_t(url, int(episode["id"])) or start + 1_000_000_000
    length = max(1.0, (end - start) / 1e9)
    lo, hi = st.slider(
        "Range (s since the episode's start)",
        0.0,
        float(np.ceil(length)),
        (0.0, float(np.ceil(length))),
        step=0.5,
        key=f"history-range-{episode['id']}",
    )
    return episode, start + int(lo * 1e9), start + int(hi * 1e9)


def replay(url: str, tables: frozenset[str], episode: pd.Series, t0: int, t1: int) -> None:
    asset, episode_id = str(episode["asset"]), int(episode["id"])
    streams = queries.episode_streams(url, episode_id)
    vector_streams = [s for s in streams if queries.stream_schema(url, asset, s)[2] == "vector"]
    if not vector_streams:
        st.info("This episode holds no vector samples.")
        return
    stream = st.selectbox("Stream", vector_streams, key="history-stream")
    sensors, units, _ = queries.stream_schema(url, asset, stream)
    chosen = st.multiselect(
        "Sensors", list(sensors), default=list(sensors[:4]), key=f"history-sensors-{stream}"
    )
    axis = time_axis("history-axis")
    t_ns, values = queries.observed(url, episode_id, stream, t0, t1)
    if not len(t_ns):
        st.info("No samples in this range.")
        return
    origin = int(episode["started_t_ns"])
    preds = queries.predictions(url, asset, stream, t0, t1) if "predictions" in tables else []
    past = None
    if preds:
        horizons = horizons_of(preds)
        h = st.select_slider(
            "What did the twin say this long before? (s)",
            [f"{x:.3g}" for x in horizons],
            key="history-horizon",
        )
        past = horizon_slice(preds, float(h))
    columns = [sensors.index(s) for s in chosen] or [0]
    st.plotly_chart(
        sensor_figure(sensors, units, t_ns, values, axis=axis, origin_ns=origin, past=past, columns=columns),
        key="history-chart",
    )
    events = queries.event_table(url, asset, ("anomaly", "fault", "note"), t0, t1)
    marks = [] if events.empty else list(zip(events["t_ns"], events["category"], events["name"], strict=True))
    if "predictions" not in tables:
        st.info("No predictions in the database yet (the twin worker stores them in `predictions`).")
    elif not preds:
        st.info("No stored predictions for this stream in this range.")
    surprise_t, surprise = (
        queries.surprise_history(url, asset, t0, t1)
        if "predictions" in tables
        else (np.zeros(0), np.zeros(0))
    )
    st.subheader("Surprise and events")
    st.plotly_chart(
        surprise_figure(surprise_t, surprise, axis=axis, origin_ns=origin, events=marks),
        key="history-surprise",
    )
    if preds:
        error_statistics(url, tables, asset, stream, t0, t1, preds, t_ns, values, sensors, units)


def error_statistics(url, tables, asset, stream, t0, t1, preds, t_ns, values, sensors, units) -> None:
    st.subheader("Error per horizon")
    if "prediction_errors" in tables:
        table = queries.error_table(url, asset, stream, t0, t1)
        if not table.empty:
            st.dataframe(table, hide_index=True, key="history-error-table")
            st.caption(
                "From the worker's `prediction_errors`: normalised RMSE in training standard deviations."
            )
    stats = horizon_errors(preds, t_ns, values)
    if not stats:
        st.caption("No prediction in this range has come due yet.")
        return
    rows = []
    for stat in stats:
        for s, name in enumerate(sensors):
            rows.append(
                {
                    "horizon (s)": stat.horizon_s,
                    "sensor": name,
                    "unit": units[s],
                    "n": stat.n,
                    "MAE": stat.mae[s],
                    "RMSE": stat.rmse[s],
                    "band coverage": stat.coverage[s],
                }
            )
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="history-horizon-stats")
    st.plotly_chart(
        horizon_error_figure(
            [s.horizon_s for s in stats],
            {f"{name}": [s.coverage[i] for s in stats] for i, name in enumerate(sensors)},
            "band coverage (fraction, 1)",
        ),
        key="history-coverage",
    )


def compare(url: str, episodes: pd.DataFrame) -> None:
    st.subheader("Compare two runs")
    labels = [episode_label(row) for _, row in episodes.iterrows()]
    if len(labels) < 2:
        st.info("Record a second run to compare it with this one.")
        return
    a = st.selectbox("Run A", labels, index=0, key="compare-a")
    b = st.selectbox("Run B", labels, index=1, key="compare-b")
    first, second = episodes.iloc[labels.index(a)], episodes.iloc[labels.index(b)]
    common = sorted(
        set(queries.episode_streams(url, int(first["id"])))
        & set(queries.episode_streams(url, int(second["id"])))
    )
    vectors = [s for s in common if queries.stream_schema(url, str(first["asset"]), s)[2] == "vector"]
    if not vectors:
        st.info("These runs share no vector stream.")
        return
    stream = st.selectbox("Stream to compare", vectors, key="compare-stream")
    sensors, units, _ = queries.stream_schema(url, str(first["asset"]), stream)
    align = st.radio("Align the runs at", list(ALIGN), horizontal=True, key="compare-align")
    runs, origins = [], []
    for label, row in (("A", first), ("B", second)):
        t, v = queries.observed(url, int(row["id"]), stream)
        if v.ndim == 2 and v.shape[1] == len(sensors):
            runs.append((f"{label}: #{row['id']} {row['asset']}", t, v))
            origins.append(first_event(url, row, ALIGN[align]))
    missing = [run[0] for run, origin in zip(runs, origins, strict=True) if ALIGN[align] and origin is None]
    if missing:
        st.caption(f"No {ALIGN[align]} in {', '.join(missing)}: aligned at its start instead.")
    x_title = (
        "time since the start of each run (s)" if not ALIGN[align] else f"time since each run's {align} (s)"
    )
    st.plotly_chart(
        compare_figure(runs, sensors, units, list(range(min(4, len(sensors)))), origins, x_title),
        key="compare-chart",
    )


def first_event(url: str, episode: pd.Series, category: str) -> int | None:
    """Time of the episode's first event of ``category`` ("": none wanted)."""
    if not category:
        return None
    start = int(episode["started_t_ns"])
    end = int(episode["ended_t_ns"]) if pd.notna(episode["ended_t_ns"]) else 2**62
    events = queries.event_table(url, str(episode["asset"]), (category,), start, end)
    return None if events.empty else int(events["t_ns"].min())


def render() -> None:
    st.title("History")
    url = config().database_url
    tables = store_tables(url)
    if tables is None:
        return
    if "episodes" not in tables:
        st.info("Nothing recorded yet: the database has no episodes table (run `twin up` or `twin record`).")
        return
    try:
        episodes = queries.episode_table(url)
        if episodes.empty:
            st.info("Nothing recorded yet: no episodes in the database.")
            return
        picked = pick_range(url, episodes)
        if picked is not None:
            episode, t0, t1 = picked
            st.caption(f"{format_local(t0)} to {format_local(t1)} ({(t1 - t0) / 1e9:.1f} s)")
            replay(url, tables, episode, t0, t1)
        compare(url, episodes)
    except queries.StoreUnavailable as exc:
        store_error(exc)
