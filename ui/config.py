"""Where the dashboard looks: bus endpoints, database URL and the live window (from the environment).

``twin ui`` passes its options to the Streamlit process through the environment, so every page
(and every AppTest) builds the same :class:`UiConfig` with :meth:`UiConfig.from_env`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from bridge import BusConfig
from twin import settings


@dataclass(frozen=True, slots=True)
class UiConfig:
    """What the dashboard reads: one bus, one database, and how much live data it keeps.

    ``window_s``: seconds of live samples kept per vector stream (a ring buffer);
    ``max_samples``: hard cap on those samples per stream whatever the rate (bounded memory);
    ``max_predictions``: predictions kept per stream (decimated to ``prediction_hz``).
    """

    bus: BusConfig = field(default_factory=BusConfig)
    database_url: str = ""
    window_s: float = 60.0
    max_samples: int = 8192
    max_predictions: int = 600
    prediction_hz: float = 10.0
    max_events: int = 1000

    def __post_init__(self) -> None:
        if not self.window_s > 0:
            raise ValueError(f"UiConfig.window_s={self.window_s!r} must be > 0 seconds")
        for name in ("max_samples", "max_predictions", "max_events"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"UiConfig.{name}={value!r} must be a positive integer")
        if not self.prediction_hz > 0:
            raise ValueError(f"UiConfig.prediction_hz={self.prediction_hz!r} must be > 0")

    @classmethod
    def from_env(cls) -> UiConfig:
        """Bus from ``JUMEAU_BUS_*``, database from ``JUMEAU_DB``/``JUMEAU_HOME``, window from
        ``JUMEAU_UI_WINDOW_S``."""
        return cls(
            bus=BusConfig.from_env(),
            database_url=settings.database_url(),
            window_s=float(os.environ.get("JUMEAU_UI_WINDOW_S", "60")),
        )
