"""Pieces every page shares: the connection banners, the time-axis choice, store access."""

from __future__ import annotations

import streamlit as st

from ui import queries
from ui.config import UiConfig
from ui.live import LiveFeed
from ui.resources import config, live_feed
from ui.timefmt import AXES


def setup(title: str) -> tuple[UiConfig, LiveFeed]:
    """The page title, the configuration and the live feed."""
    st.title(title)
    cfg = config()
    return cfg, live_feed(cfg)


def bus_banner(feed: LiveFeed) -> bool:
    """Say plainly when the bus is unreachable or silent; True when live data flows."""
    health = feed.health()
    if not health.bus_reachable:
        detail = f" ({health.error})" if health.error else ""
        st.error(
            f"The bus at {health.endpoint} is not answering{detail}. Live panels resume by themselves "
            "when it is back."
        )
        return False
    if health.last_message_age_s is None:
        st.info(f"Connected to the bus at {health.endpoint}; no data has arrived yet.")
        return False
    if health.last_message_age_s > 5:
        st.warning(f"No data from the bus for {health.last_message_age_s:.0f} s ({health.endpoint}).")
        return False
    return True


def store_tables(url: str) -> frozenset[str] | None:
    """The tables of the database, or None after saying plainly that it is unreachable."""
    try:
        return queries.tables(url)
    except queries.StoreUnavailable as exc:
        st.error(f"The database is unreachable: {exc}. This page retries on every refresh.")
        return None


def store_error(exc: queries.StoreUnavailable) -> None:
    st.error(f"The database is unreachable: {exc}. This page retries on every refresh.")


def time_axis(key: str) -> str:
    return st.radio("Time axis", AXES, horizontal=True, key=key)
