"""Where Jumeau keeps its files and database by default: the one home for embedded defaults.

``JUMEAU_HOME`` (default ``./var``) holds the SQLite database, model checkpoints and reports;
``JUMEAU_DB`` overrides the database URL (e.g. ``postgresql+psycopg://127.0.0.1/test``).
Bus addresses live in :class:`bridge.config.BusConfig`.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The data folder (created on first use by whoever writes into it)."""
    return Path(os.environ.get("JUMEAU_HOME", "var")).resolve()


def database_url() -> str:
    """``JUMEAU_DB`` if set, else a SQLite file in :func:`home`."""
    url = os.environ.get("JUMEAU_DB")
    if url:
        return url
    return f"sqlite:///{home() / 'jumeau.sqlite'}"
