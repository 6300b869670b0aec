"""Fleet: every asset with its status, surprise, open anomalies, model, message rate and gaps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from ui import queries
from ui.analysis import surprise_series
from ui.config import UiConfig
from ui.live import AssetStatus, LiveFeed
from ui.timefmt import format_local
from ui.views.common import bus_banner, setup, store_error

ASSET_PAGE = "pages/asset.py"


def current_surprise(feed: LiveFeed, status: AssetStatus) -> float | None:
    """The twin's published surprise, else the newest prediction-vs-observation score."""
    if status.surprise is not None:
        return status.surprise
    scores = []
    for info in feed.streams(status.asset):
        preds = feed.predictions(info.asset, info.stream)
        if info.kind != "vector" or not preds:
            continue
        t, values = feed.vector(info.asset, info.stream, window_s=10.0)
        _, score = surprise_series(preds[-20:], t, values)
        if len(score):
            scores.append(float(score[-1]))
    return max(scores) if scores else None


def fleet_table(cfg: UiConfig, feed: LiveFeed) -> pd.DataFrame:
    """One row per asset heard on the bus or recorded in the store."""
    try:
        anomalies = (
            queries.open_anomalies(cfg.database_url) if "events" in queries.tables(cfg.database_url) else {}
        )
        recorded = (
            queries.episode_table(cfg.database_url)
            if "episodes" in queries.tables(cfg.database_url)
            else None
        )
    except queries.StoreUnavailable as exc:
        store_error(exc)
        anomalies, recorded = {}, None
    rows = []
    live = {s.asset: s for s in feed.status()}
    for status in live.values():
        surprise = current_surprise(feed, status)
        rows.append(
            {
                "asset": status.asset,
                "status": status.status,
                "surprise": np.nan if surprise is None else round(surprise, 3),
                "open anomalies": anomalies.get(status.asset, 0),
                "model": status.model or "—",
                "rate (msg/s)": round(status.rate_hz, 1),
                "gaps": status.gaps,
                "data age (s)": None if status.data_age_s is None else round(status.data_age_s, 1),
                "last sample": format_local(status.last_t_ns),
                "streams": ", ".join(status.streams),
            }
        )
    if recorded is not None and not recorded.empty:
        for asset, group in recorded.groupby("asset"):
            if asset in live:
                continue
            rows.append(
                {
                    "asset": asset,
                    "status": "offline",
                    "surprise": np.nan,
                    "open anomalies": anomalies.get(asset, 0),
                    "model": "—",
                    "rate (msg/s)": 0.0,
                    "gaps": 0,
                    "data age (s)": None,
                    "last sample": format_local(int(group["ended_t_ns"].fillna(group["started_t_ns"]).max())),
                    "streams": "",
                }
            )
    return pd.DataFrame(rows)


@st.fragment(run_every=1.0)
def _live_table(cfg: UiConfig, feed: LiveFeed) -> None:
    bus_banner(feed)
    table = fleet_table(cfg, feed)
    if table.empty:
        st.info("No assets yet: nothing on the bus and nothing recorded. Start `twin up` or `twin sim`.")
        return
    counts = table["status"].value_counts()
    cols = st.columns(4)
    cols[0].metric("assets", len(table))
    cols[1].metric("live", int(counts.get("live", 0)))
    cols[2].metric("stale", int(counts.get("stale", 0)))
    cols[3].metric("offline", int(counts.get("offline", 0)))
    st.dataframe(
        table,
        hide_index=True,
        key="fleet-table",
        column_config={"surprise": st.column_config.NumberColumn(help="1 = edge of the predicted band")},
    )
    st.caption("Open an asset:")
    link_cols = st.columns(min(6, len(table)))
    for i, asset in enumerate(table["asset"]):
        link_cols[i % len(link_cols)].page_link(ASSET_PAGE, label=asset, query_params={"asset": asset})


def render() -> None:
    cfg, feed = setup("Fleet")
    st.caption(
        "Status: live (data in the last 2 s), stale (late, or its publisher still sends heartbeats), "
        "offline. Surprise: how far reality sits from the twin's prediction (1 = edge of the band)."
    )
    _live_table(cfg, feed)
