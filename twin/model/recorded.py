"""Recorded episodes from the store as model training data, resampled to the control rate.

An episode's ``state`` stream (and ``camera``, if asked) is sampled on a grid of
``1 / control_hz`` seconds from its first observation: each grid point takes the latest sample
at or before it (what a live worker would see). Actions are zero-order held the same way (zero
before the first one). Episodes shorter than ``min_steps`` control steps are skipped.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bridge import StreamSchema
from twin.model.checkpoint import schema_from_dict
from twin.model.data import CONTROL_HZ, Dataset, Episode

log = logging.getLogger(__name__)


def _hold(t_ns: np.ndarray, values: np.ndarray, grid: np.ndarray, before: np.ndarray) -> np.ndarray:
    """Latest value at or before each grid time (``before`` where there is none yet)."""
    index = np.searchsorted(t_ns, grid, side="right") - 1
    out = values[np.clip(index, 0, None)].astype(np.float64)
    out[index < 0] = before
    return out


def _stream_schema(session: Session, asset: str, stream: str) -> StreamSchema:
    from twin.store.models import Asset, Stream

    row = session.execute(
        select(Stream)
        .join(Asset, Asset.id == Stream.asset_id)
        .where(Asset.name == asset, Stream.name == stream)
        .order_by(Stream.id.desc())
        .limit(1)
    ).scalar()
    if row is None:
        raise LookupError(f"no {stream!r} stream schema recorded for asset {asset!r}")
    return schema_from_dict({"asset": asset, "stream": stream, "rate_hz": row.rate_hz, **row.schema})


def load_recorded(
    engine: Engine,
    *,
    asset: str | None = None,
    scene: str | None = None,
    episode_ids: list[int] | None = None,
    control_hz: float = CONTROL_HZ,
    camera: bool = False,
    min_steps: int = 60,
) -> Dataset:
    """Recorded episodes (by ids, asset, or scene) as a :class:`Dataset` with their lineage."""
    from twin.store.dataset import load_episodes

    streams = ["state", "camera"] if camera else ["state"]
    with Session(engine) as session:
        found = load_episodes(session, episode_ids, asset=asset, streams=streams)
        if scene is not None:
            found = [e for e in found if e.scene == scene]
        if not found:
            raise LookupError(f"no recorded episodes for asset={asset!r} scene={scene!r} ids={episode_ids!r}")
        schema = _stream_schema(session, found[0].asset, "state")
    step_ns = round(1e9 / control_hz)
    episodes: list[Episode] = []
    used: list[int] = []
    n_a = len(schema.actuators)
    for data in found:
        state = data.streams.get("state")
        if state is None or len(state.t_ns) < 2:
            continue
        grid = np.arange(state.t_ns[0], state.t_ns[-1] + 1, step_ns)
        if len(grid) - 1 < min_steps:
            continue
        obs = _hold(state.t_ns, state.values, grid, np.full(state.values.shape[1], np.nan))
        actions = np.zeros((len(grid) - 1, n_a))
        if data.actions:
            stream = next(iter(data.actions.values()))
            actions = _hold(
                stream.t_ns, stream.values.reshape(len(stream.t_ns), -1), grid[:-1], np.zeros(n_a)
            )
        frames = None
        if camera:
            cam = data.streams.get("camera")
            if cam is None:
                continue
            index = np.clip(np.searchsorted(cam.t_ns, grid, side="right") - 1, 0, None)
            frames = cam.values[index].astype(np.uint8)
        episodes.append(Episode(obs, actions, frames))
        used.append(data.id)
    if len(episodes) < 4:
        raise LookupError(
            f"only {len(episodes)} usable recorded episodes (need >= 4 of >= {min_steps} steps)"
        )
    lineage: dict[str, Any] = {
        "source": "store",
        "scene": found[0].scene,
        "asset": found[0].asset,
        "episode_ids": used,
        "control_hz": control_hz,
        "camera": camera,
        "database": engine.url.render_as_string(hide_password=True),
    }
    log.info("loaded %d recorded episodes (%d skipped)", len(episodes), len(found) - len(episodes))
    return Dataset(schema, tuple(episodes), control_hz, lineage)
