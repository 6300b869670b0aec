"""Asset live: observed traces with the twin's predicted fan ahead of now, past predictions at a
chosen horizon over what happened, the surprise timeline with anomaly/fault markers, and the
latest camera frame beside the twin's nearest remembered one."""

from __future__ import annotations

import contextlib

import numpy as np
import streamlit as st

from ui import queries
from ui.analysis import horizon_slice, horizons_of, surprise_series
from ui.config import UiConfig
from ui.live import SURPRISE_STREAM, LiveFeed, StreamInfo
from ui.plots import sensor_figure, surprise_figure
from ui.timefmt import LOCAL, SIM, format_local
from ui.views.common import bus_banner, setup, store_error, time_axis

MAX_POINTS = 1000
"""Points per trace sent to the browser (the ring is thinned evenly beyond this): about one per
pixel column of a wide chart; more only costs JSON and SVG."""
LIVE_PERIOD_S = 0.3
"""The live panel redraws this often (above 3 Hz: the target is 2 Hz with margin)."""
LIVE_SENSORS = 2
"""Sensors drawn by default (the operator adds more). Streamlit redraws a plotly chart from
scratch on every live update, and the browser's cost grows with the panels: on the shared 2-core
machine 4 panels let the browser draw 0.7 to 0.9 updates a second, 2 panels 1.5 to 1.7."""
CONTEXT_PERIOD_S = 1.0
"""The surprise timeline and the camera redraw this often: each redraw of a chart costs the
browser a full plotly draw, so the traces get the fast rate and the context a slower one."""


def thin(t_ns: np.ndarray, values: np.ndarray, limit: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    if len(t_ns) <= limit:
        return t_ns, values
    keep = np.linspace(0, len(t_ns) - 1, limit).astype(int)
    return t_ns[keep], values[keep]


def choose_asset(cfg: UiConfig, feed: LiveFeed) -> str | None:
    names = feed.assets()
    try:
        if "episodes" in queries.tables(cfg.database_url):
            recorded = queries.episode_table(cfg.database_url)
            if not recorded.empty:
                names = sorted(set(names) | set(recorded["asset"]))
    except queries.StoreUnavailable as exc:
        store_error(exc)
    wanted = st.query_params.get("asset")
    if wanted and wanted not in names:
        names = [wanted, *names]
    if not names:
        return None
    index = names.index(wanted) if wanted in names else 0
    asset = st.selectbox("Asset", names, index=index, key="asset-choice")
    if asset != wanted:
        st.query_params["asset"] = asset
    return asset


def sim_origin(cfg: UiConfig, asset: str, fallback_ns: int) -> int:
    """Start of the asset's current run (its newest recorded episode), for the sim-time axis."""
    try:
        if "episodes" in queries.tables(cfg.database_url):
            episodes = queries.episode_table(cfg.database_url, asset)
            if not episodes.empty:
                return int(episodes["started_t_ns"].iloc[0])
    except queries.StoreUnavailable:
        pass
    return fallback_ns


def events_for(cfg: UiConfig, feed: LiveFeed, asset: str, t0_ns: int) -> list[tuple[int, str, str]]:
    """(t_ns, category, name) of the asset's anomalies, faults and notes since ``t0_ns``."""
    seen = {(e.t_ns, e.category, e.name) for e in feed.events(asset) if e.t_ns >= t0_ns}
    try:
        if "events" in queries.tables(cfg.database_url):
            table = queries.event_table(cfg.database_url, asset, ("anomaly", "fault", "note"), t0_ns)
            if not table.empty:
                seen |= set(zip(table["t_ns"], table["category"], table["name"], strict=True))
    except queries.StoreUnavailable:
        pass
    return sorted(seen)


def surprise_now(feed: LiveFeed, asset: str, vectors: list[StreamInfo], window_s: float):
    """``(t_ns, score, label)``: the twin's surprise stream, else computed from its predictions."""
    if any(v.stream == SURPRISE_STREAM for v in vectors):
        t, values = feed.vector(asset, SURPRISE_STREAM, window_s)
        return t, values[:, 0] if values.size else np.zeros(0), "surprise (twin)"
    series = []
    for info in vectors:
        preds = feed.predictions(asset, info.stream)
        if preds:
            t, values = feed.vector(asset, info.stream, window_s)
            series.append(surprise_series(preds, t, values))
    if not series:
        return np.zeros(0, dtype=np.int64), np.zeros(0), ""
    t, score = max(series, key=lambda s: len(s[0]))
    return t, score, "surprise (|observed - predicted| / band half-width)"


@st.cache_data(ttl=5, show_spinner=False)
def remembered(url: str, asset: str, t_bucket_ns: int) -> tuple[int, float, np.ndarray | None] | None:
    """The twin's most similar remembered moment (t_ns, similarity, camera frame or None)."""
    try:
        from twin.worker.memory import search
    except ImportError:
        return None
    from ui.resources import engine

    moments = search(engine(url), asset, t_bucket_ns, k=1)
    if not moments:
        return None
    moment = moments[0]
    frame = queries.frame_near(url, asset, moment.t_ns)
    return moment.t_ns, moment.similarity, None if frame is None else frame[1]


def camera_panel(cfg: UiConfig, feed: LiveFeed, asset: str, tables: frozenset[str]) -> None:
    latest = feed.frame(asset, "camera")
    if latest is None:
        st.caption("No camera on this asset (or no frame yet).")
        return
    t_ns, frame = latest
    left, right = st.columns(2)
    left.image(frame, caption=f"camera, {format_local(t_ns, with_date=False)}", width=256)
    if "memories" not in tables:
        right.caption("The twin's memory is not in the database yet (no `memories` table).")
        return
    try:
        found = remembered(cfg.database_url, asset, t_ns // 5_000_000_000 * 5_000_000_000)
    except queries.StoreUnavailable as exc:
        right.caption(f"Memory unavailable: {exc}")
        return
    if found is None:
        right.caption("Nothing similar remembered yet.")
    elif found[2] is None:
        right.caption(f"Most similar remembered moment: {format_local(found[0])} (no frame recorded then).")
    else:
        right.image(
            found[2], caption=f"remembered {format_local(found[0])}, similarity {found[1]:.2f}", width=256
        )


@st.fragment(run_every=LIVE_PERIOD_S)
def live_panel(cfg: UiConfig, feed: LiveFeed, asset: str) -> None:
    bus_banner(feed)  # a silent bus still leaves the buffers to draw
    streams = feed.streams(asset)
    vectors = [s for s in streams if s.kind == "vector" and s.stream != SURPRISE_STREAM]
    if not vectors:
        st.info(f"No live data from {asset} yet. History is on the History page.")
        return
    c1, c2, c3 = st.columns([2, 2, 3])
    stream = c1.selectbox("Stream", [v.stream for v in vectors], key="asset-stream")
    info = next(v for v in vectors if v.stream == stream)
    window_s = c2.slider("Window (s)", 5, int(cfg.window_s), min(30, int(cfg.window_s)), key="asset-window")
    axis = time_axis("asset-axis")
    sensors = c3.multiselect(
        "Sensors",
        list(info.sensors),
        default=list(info.sensors[:LIVE_SENSORS]),
        key=f"asset-sensors-{asset}-{stream}",
    )
    preds = feed.predictions(asset, stream)
    latest = feed.latest_prediction(asset, stream)
    horizons = horizons_of(preds)
    past = None
    if horizons:
        choice = st.select_slider(
            "Past predictions: what did the twin say this long before? (s)",
            options=[f"{h:.3g}" for h in horizons],
            value=f"{horizons[min(len(horizons) - 1, len(horizons) // 2)]:.3g}",
            key="asset-horizon",
        )
        past = horizon_slice(preds, float(choice))
    t_ns, values = feed.vector(asset, stream, window_s)
    now_ns = int(t_ns[-1]) if len(t_ns) else 0
    origin = sim_origin(cfg, asset, int(t_ns[0]) if len(t_ns) else 0) if axis == SIM else 0
    if past is not None and len(t_ns):
        keep = past.target_t_ns >= t_ns[0]
        past = type(past)(
            past.horizon_s, past.target_t_ns[keep], past.mean[keep], past.lower[keep], past.upper[keep]
        )
    t_plot, v_plot = thin(t_ns, values)
    columns = [info.sensors.index(s) for s in sensors] or [0]
    figure = sensor_figure(
        info.sensors,
        info.units,
        t_plot,
        v_plot,
        axis=axis,
        origin_ns=origin,
        latest=latest,
        past=past,
        now_ns=now_ns,
        columns=columns,
    )
    st.plotly_chart(figure, key="asset-sensors-chart", config={"displaylogo": False})
    if latest is None:
        st.caption("No predictions from the twin for this stream yet (pred." + f"{asset}.{stream}).")
    else:
        st.caption(
            f"Model {latest.model or '?'}; prediction made at "
            f"{format_local(latest.origin_t_ns, with_date=False)}, "
            f"{latest.level:.0%} band, horizons up to {float(np.max(latest.horizons_s)):g} s."
        )


@st.fragment(run_every=CONTEXT_PERIOD_S)
def context_panel(cfg: UiConfig, feed: LiveFeed, asset: str) -> None:
    """The surprise timeline and the camera, redrawn less often than the traces (same window and
    time axis, read from the live panel's controls)."""
    streams = feed.streams(asset)
    vectors = [s for s in streams if s.kind == "vector" and s.stream != SURPRISE_STREAM]
    if not vectors:
        return
    window_s = float(st.session_state.get("asset-window", min(30, int(cfg.window_s))))
    axis = st.session_state.get("asset-axis", LOCAL)
    st.subheader("Surprise")
    t_s, score, label = surprise_now(feed, asset, vectors, window_s)
    chosen = st.session_state.get("asset-stream")
    stream = chosen if any(v.stream == chosen for v in vectors) else vectors[0].stream
    t_ns, _ = feed.vector(asset, stream, window_s)
    now_ns = int(t_ns[-1]) if len(t_ns) else 0
    origin = sim_origin(cfg, asset, int(t_ns[0]) if len(t_ns) else 0) if axis == SIM else 0
    events = events_for(cfg, feed, asset, now_ns - int(window_s * 1e9) if now_ns else 0)
    if not len(t_s):
        st.caption("No surprise yet: it needs the twin's predictions. Fault and anomaly markers still show.")
    st.plotly_chart(
        surprise_figure(t_s, score, axis=axis, origin_ns=origin, events=events, source=label or "surprise"),
        key="asset-surprise-chart",
        config={"displaylogo": False},
    )
    st.subheader("Camera")
    tables = frozenset()
    with contextlib.suppress(queries.StoreUnavailable):
        tables = queries.tables(cfg.database_url)
    camera_panel(cfg, feed, asset, tables)


def render() -> None:
    cfg, feed = setup("Asset live")
    asset = choose_asset(cfg, feed)
    if asset is None:
        bus_banner(feed)
        st.info("No assets yet: nothing on the bus and nothing recorded. Start `twin up` or `twin sim`.")
        return
    live_panel(cfg, feed, asset)
    context_panel(cfg, feed, asset)
