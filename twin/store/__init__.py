"""Jumeau's SQL store: one schema (SQLite file by default, PostgreSQL by URL) for the project.

Build the engine at start-up with :func:`make_engine`, migrate it with :func:`upgrade`, then pass
sessions to the functions of :mod:`twin.store.telemetry` (writes) and :mod:`twin.store.dataset`
(training data). ``docs/store.md`` describes the tables, URLs and conventions.

Names are imported lazily, so ``import twin.store`` (e.g. by the CLI) costs nothing until used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from twin.store.dataset import EpisodeData, StreamData, export_episodes, load_episodes
    from twin.store.engine import make_engine
    from twin.store.migrate import current_revision, head_revision, schema_differences, upgrade
    from twin.store.models import ActionRow, Asset, Base, Episode, EventRow, ObservationRow, Stream

_EXPORTS = {
    "make_engine": "twin.store.engine",
    "upgrade": "twin.store.migrate",
    "current_revision": "twin.store.migrate",
    "head_revision": "twin.store.migrate",
    "schema_differences": "twin.store.migrate",
    "Base": "twin.store.models",
    "Asset": "twin.store.models",
    "Stream": "twin.store.models",
    "Episode": "twin.store.models",
    "ObservationRow": "twin.store.models",
    "ActionRow": "twin.store.models",
    "EventRow": "twin.store.models",
    "EpisodeData": "twin.store.dataset",
    "StreamData": "twin.store.dataset",
    "load_episodes": "twin.store.dataset",
    "export_episodes": "twin.store.dataset",
}

__all__ = [
    "ActionRow",
    "Asset",
    "Base",
    "Episode",
    "EpisodeData",
    "EventRow",
    "ObservationRow",
    "Stream",
    "StreamData",
    "current_revision",
    "export_episodes",
    "head_revision",
    "load_episodes",
    "make_engine",
    "schema_differences",
    "upgrade",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'twin.store' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
