"""History / time travel: replay a recorded range (or the moments around an event) with the twin's
predictions against what happened, per-horizon error statistics, and two runs (or two models on
the same range) on one synchronised timeline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from ui import queries
from ui.analysis import horizon_errors, horizon_slice, horizons_of
from ui.plots import compare_figure, horizon_error_figure, models_figure, sensor_figure, surprise_figure
from ui.resources import config
from ui.timefmt import format_local
from ui.views.common import store_error, store_tables, time_axis

EVENT_SPAN_S = 15.0
ERROR_POINTS = 20_000
"""Samples the error statistics read at most (11 minutes at 30 Hz read whole): more than the
charts draw, never sent to the browser."""
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


def pick_model(url: str, asset: str, stream: str, t0: int, t1: int, key: str) -> str | None:
    """The model whose stored predictions to show (a choice when several predicted this range)."""
    models = queries.prediction_models(url, asset, stream, t0, t1)
    if len(models) > 1:
        return st.selectbox("Model", models, key=key)
    return models[0] if models else None


def replay(url: str, tables: frozenset[str], episode: pd.Series, t0: int, t1: int) -> str | None:
    """Observations with one model's stored predictions, surprise and errors; returns the stream."""
    asset, episode_id = str(episode["asset"]), int(episode["id"])
    streams = queries.episode_streams(url, episode_id)
    vector_streams = [s for s in streams if queries.stream_schema(url, asset, s)[2] == "vector"]
    if not vector_streams:
        st.info("This episode holds no vector samples.")
        return None
    stream = st.selectbox("Stream", vector_streams, key="history-stream")
    sensors, units, _ = queries.stream_schema(url, asset, stream)
    chosen = st.multiselect(
        "Sensors", list(sensors), default=list(sensors[:4]), key=f"history-sensors-{stream}"
    )
    axis = time_axis("history-axis")
    t_ns, values = queries.observed(url, episode_id, stream, t0, t1)
    if not len(t_ns):
        st.info("No samples in this range.")
        return stream
    origin = int(episode["started_t_ns"])
    model = pick_model(url, asset, stream, t0, t1, "history-model") if "predictions" in tables else None
    preds = queries.predictions(url, asset, stream, model, t0, t1) if model else []
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
        queries.surprise_history(url, asset, model, t0, t1) if model else (np.zeros(0), np.zeros(0))
    )
    st.subheader("Surprise and events")
    st.plotly_chart(
        surprise_figure(surprise_t, surprise, axis=axis, origin_ns=origin, events=marks),
        key="history-surprise",
    )
    if preds:
        t_err, v_err = queries.observed(url, episode_id, stream, t0, t1, ERROR_POINTS)
        error_statistics(url, tables, asset, stream, t0, t1, preds, t_err, v_err, sensors, units)
    return stream


def error_statistics(url, tables, asset, stream, t0, t1, preds, t_ns, values, sensors, units) -> None:
    st.subheader("Error per horizon")
    if "prediction_errors" in tables:
        table = queries.error_table(url, asset, stream, t0, t1)
        if not table.empty:
            st.dataframe(table, hide_index=True, key="history-error-table")
            st.caption(
                "From the worker's `prediction_errors`, per model and horizon: normalised RMSE in "
                "training standard deviations; coverage: the share of due predictions whose band held "
                "every sensor."
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
    sampled_note(t_ns, t0, t1)
    st.plotly_chart(
        horizon_error_figure(
            [s.horizon_s for s in stats],
            {f"{name}": [s.coverage[i] for s in stats] for i, name in enumerate(sensors)},
            "band coverage (fraction, 1)",
        ),
        key="history-coverage",
    )


def sampled_note(t_ns: np.ndarray, t0: int, t1: int) -> None:
    """Say so when the range was read in time buckets (errors then use interpolated samples)."""
    if len(t_ns) >= ERROR_POINTS:
        step = (t1 - t0) / 1e9 / len(t_ns)
        st.caption(
            f"This range is read as {len(t_ns)} samples (one every {step:.2g} s) and at most "
            f"{queries.MAX_PREDICTIONS} predictions: errors compare predictions with interpolated "
            "samples. A shorter range gives exact errors."
        )


def model_errors(
    preds: dict[str, list], t_ns: np.ndarray, values: np.ndarray, sensors, units
) -> pd.DataFrame:
    """Per horizon and sensor, each model's MAE, RMSE and band coverage side by side."""
    rows: dict[tuple[float, str], dict[str, object]] = {}
    for label, records in preds.items():
        for stat in horizon_errors(records, t_ns, values):
            for s, name in enumerate(sensors):
                row = rows.setdefault(
                    (round(stat.horizon_s, 6), name),
                    {"horizon (s)": stat.horizon_s, "sensor": name, "unit": units[s]},
                )
                row.update(
                    {
                        f"{label} n": stat.n,
                        f"{label} MAE": stat.mae[s],
                        f"{label} RMSE": stat.rmse[s],
                        f"{label} coverage": stat.coverage[s],
                    }
                )
    return pd.DataFrame([rows[k] for k in sorted(rows)])


def compare_models(
    url: str, tables: frozenset[str], episode: pd.Series, t0: int, t1: int, stream: str
) -> None:
    """Two models' stored predictions of the same asset, stream and range on one timeline, with
    their per-horizon errors side by side."""
    asset, episode_id = str(episode["asset"]), int(episode["id"])
    models = queries.prediction_models(url, asset, stream, t0, t1) if "predictions" in tables else []
    if len(models) < 2:
        st.info(
            f"Only {len(models)} model stored predictions of {asset} {stream} in this range: "
            "a second model (another worker, or a retrained version) makes a comparison."
        )
        return
    c1, c2 = st.columns(2)
    a = c1.selectbox("Model A", models, index=0, key="compare-model-a")
    b = c2.selectbox("Model B", models, index=1, key="compare-model-b")
    sensors, units, _ = queries.stream_schema(url, asset, stream)
    t_ns, values = queries.observed(url, episode_id, stream, t0, t1)
    preds = {a: queries.predictions(url, asset, stream, a, t0, t1)}
    preds[b] = queries.predictions(url, asset, stream, b, t0, t1)
    horizons = sorted(set(horizons_of(preds[a])) & set(horizons_of(preds[b]))) or horizons_of(preds[a])
    h = float(
        st.select_slider(
            "Predictions made this long before (s)", [f"{x:.3g}" for x in horizons], key="compare-horizon"
        )
    )
    axis = time_axis("compare-model-axis")
    slices = [(name, horizon_slice(records, h)) for name, records in preds.items()]
    st.plotly_chart(
        models_figure(
            sensors, units, t_ns, values, slices, axis=axis, origin_ns=int(episode["started_t_ns"]),
            columns=list(range(min(4, len(sensors)))),
        ),
        key="compare-models-chart",
    )  # fmt: skip
    t_err, v_err = queries.observed(url, episode_id, stream, t0, t1, ERROR_POINTS)
    table = model_errors(preds, t_err, v_err, sensors, units)
    if table.empty:
        st.caption("No prediction of either model in this range has come due yet.")
        return
    st.dataframe(table, hide_index=True, key="compare-models-errors")
    sampled_note(t_err, t0, t1)
    st.plotly_chart(
        horizon_error_figure(
            list(table["horizon (s)"].drop_duplicates()),
            {
                f"{label} {name} ({units[s]})": table[table["sensor"] == name][f"{label} RMSE"].tolist()
                for label in preds
                for s, name in enumerate(sensors[:4])
                if f"{label} RMSE" in table
            },
            "RMSE (in each sensor's unit)",
        ),
        key="compare-models-rmse",
    )


def compare(url: str, episodes: pd.DataFrame) -> None:
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
        stream = None
        if picked is not None:
            episode, t0, t1 = picked
            st.caption(f"{format_local(t0)} to {format_local(t1)} ({(t1 - t0) / 1e9:.1f} s)")
            stream = replay(url, tables, episode, t0, t1)
        st.subheader("Compare")
        mode = st.radio("Compare", ["two runs", "two models"], horizontal=True, key="compare-mode")
        if mode == "two runs":
            compare(url, episodes)
        elif picked is None or stream is None:
            st.info("Pick a range with a vector stream above: the two models are compared on it.")
        else:
            compare_models(url, tables, episode, t0, t1, stream)
    except queries.StoreUnavailable as exc:
        store_error(exc)
