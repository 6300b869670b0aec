"""Shared connections of the dashboard, one per process (``st.cache_resource``).

The live feed is the one background bus subscriber every session reads; the engine is the one
connection pool every query uses. Both are keyed by their configuration, so a test (or a second
``twin ui``) with other endpoints gets its own. A feed whose thread died is replaced on the
next rerun (``validate``): the page recovers without a restart.
"""

from __future__ import annotations

import sqlalchemy as sa
import streamlit as st

from bridge import BusConfig
from twin.store.engine import make_engine
from ui.config import UiConfig
from ui.live import LiveFeed


def config() -> UiConfig:
    """The dashboard's configuration, read from the environment (cheap; not cached)."""
    return UiConfig.from_env()


@st.cache_resource(show_spinner=False, validate=lambda feed: feed.alive)
def _live_feed(bus: BusConfig, window_s: float) -> LiveFeed:
    return LiveFeed(UiConfig(bus=bus, window_s=window_s)).start()


def live_feed(cfg: UiConfig | None = None) -> LiveFeed:
    """The process's live feed for ``cfg``'s bus (started on first use)."""
    cfg = cfg or config()
    return _live_feed(cfg.bus, cfg.window_s)


@st.cache_resource(show_spinner=False)
def engine(database_url: str) -> sa.Engine:
    """The process's engine for ``database_url`` (nothing connects until a query runs)."""
    return make_engine(database_url)
