"""Everything the dashboard reads from (or writes to) SQL: small functions over the store's tables.

Reads are ``st.cache_data(ttl=...)`` functions of the database URL and plain arguments, so a
page rerun costs nothing until the cache expires. A database that cannot be reached raises
:class:`StoreUnavailable` (never cached: the next rerun tries again). Tables the worker adds
(``predictions``, ``prediction_errors``, ``memories``) may not exist yet: callers check
:func:`tables` first and say so plainly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import numpy as np
import pandas as pd
import sqlalchemy as sa
import streamlit as st
from sqlalchemy.orm import Session

from bridge import Event
from twin.store import models as m
from twin.store.telemetry import decode_values, event_row, insert_events
from ui.live import PredictionRecord
from ui.resources import engine
from ui.sampling import PREDICTIONS, SURPRISE, sample_rows, sample_series

P = ParamSpec("P")
R = TypeVar("R")
MAX_POINTS = 2000
"""Samples per stream a history plot fetches at most (longer ranges are decimated in SQL): more
than the pixel columns of a wide chart; more only costs JSON, parsing and drawing."""


class StoreUnavailable(RuntimeError):
    """The database did not answer (down, locked, wrong URL)."""


def guarded(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn driver errors into :class:`StoreUnavailable` with the database's own words."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except sa.exc.DBAPIError as exc:
            raise StoreUnavailable(str(exc.orig).splitlines()[0] if exc.orig else str(exc)) from exc
        except sa.exc.OperationalError as exc:  # pragma: no cover - subclass of DBAPIError
            raise StoreUnavailable(str(exc)) from exc

    return wrapper


@st.cache_data(ttl=10, show_spinner=False)
@guarded
def tables(url: str) -> frozenset[str]:
    """Names of the tables that exist in the database."""
    with engine(url).connect() as connection:
        return frozenset(sa.inspect(connection).get_table_names())


# --- assets, episodes, streams ------------------------------------------------------------------
@st.cache_data(ttl=5, show_spinner=False)
@guarded
def episode_table(url: str, asset: str | None = None) -> pd.DataFrame:
    """Recorded episodes (newest first): id, asset, scene, seed, controller, start/end, counts."""
    query = (
        sa.select(
            m.Episode.id,
            m.Asset.name.label("asset"),
            m.Episode.scene,
            m.Episode.seed,
            m.Episode.controller,
            m.Episode.started_t_ns,
            m.Episode.ended_t_ns,
            m.Episode.n_observations,
            m.Episode.n_events,
            m.Episode.end_reason,
            m.Episode.recording,
        )
        .join(m.Asset, m.Asset.id == m.Episode.asset_id)
        .order_by(m.Episode.started_t_ns.desc())
    )
    if asset:
        query = query.where(m.Asset.name == asset)
    with engine(url).connect() as connection:
        return pd.DataFrame(connection.execute(query).mappings().all())


@st.cache_data(ttl=30, show_spinner=False)
@guarded
def stream_schema(url: str, asset: str, stream: str) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """``(sensor names, units, kind)`` of the newest recorded schema of a stream."""
    query = (
        sa.select(m.Stream.schema, m.Stream.kind)
        .join(m.Asset, m.Asset.id == m.Stream.asset_id)
        .where(m.Asset.name == asset, m.Stream.name == stream)
        .order_by(m.Stream.id.desc())
        .limit(1)
    )
    with engine(url).connect() as connection:
        row = connection.execute(query).first()
    if row is None:
        return (), (), ""
    sensors = row.schema.get("sensors", [])
    return tuple(s["name"] for s in sensors), tuple(s["unit"] for s in sensors), row.kind


@st.cache_data(ttl=30, show_spinner=False)
@guarded
def episode_streams(url: str, episode_id: int) -> list[str]:
    """Streams recorded in an episode: one primary-key seek per stream (``min(stream) > last``),
    never a scan of the episode's rows (millions for a day)."""
    o = m.ObservationRow
    streams: list[str] = []
    with engine(url).connect() as connection:
        while True:
            query = sa.select(sa.func.min(o.stream)).where(o.episode_id == episode_id)
            if streams:
                query = query.where(o.stream > streams[-1])
            name = connection.execute(query).scalar()
            if name is None:
                return streams
            streams.append(name)


@st.cache_data(ttl=5, show_spinner=False)
@guarded
def episode_last_t(url: str, episode_id: int) -> int | None:
    """Time of the newest sample of an episode (for episodes still open)."""
    with engine(url).connect() as connection:
        return connection.execute(
            sa.select(sa.func.max(m.ObservationRow.t_ns)).where(m.ObservationRow.episode_id == episode_id)
        ).scalar()


@st.cache_data(ttl=30, show_spinner=False, max_entries=64)
@guarded
def observed(
    url: str, episode_id: int, stream: str, t0_ns: int = 0, t1_ns: int = 2**62, max_points: int = MAX_POINTS
) -> tuple[np.ndarray, np.ndarray]:
    """``(t_ns, values)`` of a vector stream in an episode and time range, at most ``max_points``
    samples (longer ranges: the first sample of each of ``max_points`` time buckets, in SQL)."""
    with engine(url).connect() as connection:
        rows = sample_rows(connection, episode_id, stream, t0_ns, t1_ns, max_points)
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0))
    t = np.array([r.t_ns for r in rows], dtype=np.int64)
    values = np.stack([decode_values(r.dtype, r.shape, r.data).astype(np.float64) for r in rows])
    return t, values


@st.cache_data(ttl=30, show_spinner=False, max_entries=32)
@guarded
def frame_near(url: str, asset: str, t_ns: int, stream: str = "camera") -> tuple[int, np.ndarray] | None:
    """The recorded camera frame of ``asset`` closest before ``t_ns`` (within 10 s)."""
    query = (
        sa.select(
            m.ObservationRow.t_ns, m.ObservationRow.dtype, m.ObservationRow.shape, m.ObservationRow.data
        )
        .join(m.Episode, m.Episode.id == m.ObservationRow.episode_id)
        .join(m.Asset, m.Asset.id == m.Episode.asset_id)
        .where(
            m.Asset.name == asset,
            m.ObservationRow.stream == stream,
            m.ObservationRow.t_ns <= t_ns,
            m.ObservationRow.t_ns >= t_ns - 10_000_000_000,
        )
        .order_by(m.ObservationRow.t_ns.desc())
        .limit(1)
    )
    with engine(url).connect() as connection:
        row = connection.execute(query).first()
    return None if row is None else (row.t_ns, decode_values(row.dtype, row.shape, row.data))


# --- events and acknowledgements ------------------------------------------------------------------
@st.cache_data(ttl=2, show_spinner=False)
@guarded
def event_table(
    url: str,
    asset: str | None = None,
    categories: tuple[str, ...] = (),
    t0_ns: int = 0,
    t1_ns: int = 2**62,
    limit: int = 500,
) -> pd.DataFrame:
    """Events (newest first) with ``acknowledged`` and the acknowledgement notes, if any."""
    has_acks = "acknowledgements" in tables(url)
    query = sa.select(
        m.EventRow.id,
        m.EventRow.asset,
        m.EventRow.t_ns,
        m.EventRow.category,
        m.EventRow.name,
        m.EventRow.severity,
        m.EventRow.message,
        m.EventRow.params,
        m.EventRow.source,
    ).where(m.EventRow.t_ns >= t0_ns, m.EventRow.t_ns <= t1_ns)
    if asset:
        query = query.where(m.EventRow.asset == asset)
    if categories:
        query = query.where(m.EventRow.category.in_(categories))
    query = query.order_by(m.EventRow.t_ns.desc()).limit(limit)
    with engine(url).connect() as connection:
        frame = pd.DataFrame(connection.execute(query).mappings().all())
        if frame.empty:
            return frame
        frame["acknowledged"] = False
        frame["notes"] = ""
        if has_acks:
            acks = connection.execute(
                sa.select(
                    m.AcknowledgementRow.event_id, m.AcknowledgementRow.author, m.AcknowledgementRow.note
                )
                .where(m.AcknowledgementRow.event_id.in_(frame["id"].tolist()))
                .order_by(m.AcknowledgementRow.id)
            ).all()
            notes: dict[int, list[str]] = {}
            for ack in acks:
                notes.setdefault(ack.event_id, []).append(
                    f"{ack.author}: {ack.note}" if ack.note else ack.author
                )
            frame["acknowledged"] = frame["id"].isin(notes.keys())
            frame["notes"] = frame["id"].map(lambda i: " | ".join(notes.get(i, [])))
    return frame


@st.cache_data(ttl=2, show_spinner=False)
@guarded
def open_anomalies(url: str) -> dict[str, int]:
    """Per asset, anomaly events not acknowledged yet."""
    query = sa.select(m.EventRow.asset, sa.func.count()).where(m.EventRow.category == "anomaly")
    if "acknowledgements" in tables(url):
        acked = sa.select(m.AcknowledgementRow.event_id)
        query = query.where(m.EventRow.id.not_in(acked))
    with engine(url).connect() as connection:
        return {asset: n for asset, n in connection.execute(query.group_by(m.EventRow.asset)).all()}


@guarded
def acknowledge(url: str, event_id: int, author: str, note: str) -> int:
    """Store an acknowledgement of event ``event_id``; return its id. Clears the event caches."""
    with Session(engine(url)) as session, session.begin():
        if session.get(m.EventRow, event_id) is None:
            raise ValueError(f"no event with id {event_id}")
        row = m.AcknowledgementRow(
            event_id=event_id, author=author.strip() or "operator", note=note.strip(), t_ns=time.time_ns()
        )
        session.add(row)
        session.flush()
        ack_id = row.id
    event_table.clear()
    open_anomalies.clear()
    return ack_id


@guarded
def add_note(url: str, asset: str, author: str, text: str) -> None:
    """Store an operator note on ``asset`` as a ``note`` event (shown to everyone)."""
    event = Event(
        asset,
        time.time_ns(),
        "note",
        "operator_note",
        message=text.strip(),
        params={"author": author.strip() or "operator"},
        source="twin-ui",
    )
    with Session(engine(url)) as session, session.begin():
        insert_events(session, [event_row(event)])
    event_table.clear()


# --- worker tables --------------------------------------------------------------------------------
MAX_PREDICTIONS = 1000
"""Predictions a history view reads at most per model and stream (each holds every horizon)."""


@st.cache_data(ttl=10, show_spinner=False)
@guarded
def prediction_models(url: str, asset: str, stream: str, t0_ns: int = 0, t1_ns: int = 2**62) -> list[str]:
    """Models with stored predictions of ``asset``/``stream`` whose origins fall in ``[t0, t1]``:
    one seek per model on the ``(asset, stream, model, origin_t_ns)`` key, never a scan."""
    p = m.PredictionRow
    models: list[str] = []
    with engine(url).connect() as connection:
        while True:
            query = sa.select(sa.func.min(p.model)).where(p.asset == asset, p.stream == stream)
            if models:
                query = query.where(p.model > models[-1])
            name = connection.execute(query).scalar()
            if name is None:
                break
            models.append(name)
        return [
            name
            for name in models
            if connection.execute(
                sa.select(p.origin_t_ns)
                .where(
                    p.asset == asset,
                    p.stream == stream,
                    p.model == name,
                    p.origin_t_ns >= t0_ns,
                    p.origin_t_ns <= t1_ns,
                )
                .limit(1)
            ).first()
            is not None
        ]


@st.cache_data(ttl=30, show_spinner=False, max_entries=32)
@guarded
def predictions(
    url: str, asset: str, stream: str, model: str, t0_ns: int, t1_ns: int, max_n: int = MAX_PREDICTIONS
) -> list[PredictionRecord]:
    """Stored predictions of one model for a stream with origins in ``[t0, t1]``: at most
    ``max_n`` (a long range: the first prediction of each of ``max_n`` time buckets, in SQL)."""
    with engine(url).connect() as connection:
        rows = sample_series(
            connection, PREDICTIONS, {"asset": asset, "stream": stream, "model": model}, t0_ns, t1_ns, max_n
        )
    out = []
    for row in rows:
        horizons = np.asarray(row.horizons_s, dtype=np.float64)
        shape = (len(horizons), -1)
        out.append(
            PredictionRecord(
                row.origin_t_ns,
                horizons,
                np.frombuffer(row.mean, dtype="<f8").reshape(shape),
                np.frombuffer(row.lower, dtype="<f8").reshape(shape),
                np.frombuffer(row.upper, dtype="<f8").reshape(shape),
                float(row.level),
                row.model,
            )
        )
    return out


@st.cache_data(ttl=30, show_spinner=False)
@guarded
def surprise_history(
    url: str, asset: str, model: str, t0_ns: int, t1_ns: int, max_points: int = MAX_POINTS
) -> tuple[np.ndarray, np.ndarray]:
    """``(t_ns, surprise)`` the worker stored with one model's predictions of ``asset``: at most
    ``max_points`` (a long range: the first of each time bucket, in SQL)."""
    with engine(url).connect() as connection:
        rows = sample_series(connection, SURPRISE, {"asset": asset, "model": model}, t0_ns, t1_ns, max_points)
    return (
        np.array([r.origin_t_ns for r in rows], dtype=np.int64),
        np.array([r.surprise for r in rows], dtype=np.float64),
    )


@st.cache_data(ttl=10, show_spinner=False)
@guarded
def error_table(url: str, asset: str, stream: str, t0_ns: int, t1_ns: int) -> pd.DataFrame:
    """Per model and horizon: how many predictions came due, their mean normalised RMSE and band
    coverage (from the worker's ``prediction_errors``)."""
    e = m.PredictionErrorRow
    query = (
        sa.select(
            e.model,
            e.horizon_s,
            sa.func.count().label("n"),
            sa.func.avg(e.nrmse).label("mean_nrmse"),
            sa.func.max(e.nrmse).label("max_nrmse"),
            sa.func.avg(sa.case((e.in_band, 1.0), else_=0.0)).label("coverage"),
        )
        .where(e.asset == asset, e.stream == stream, e.target_t_ns >= t0_ns, e.target_t_ns <= t1_ns)
        .group_by(e.model, e.horizon_s)
        .order_by(e.model, e.horizon_s)
    )
    with engine(url).connect() as connection:
        return pd.DataFrame(connection.execute(query).mappings().all())


@st.cache_data(ttl=10, show_spinner=False)
@guarded
def memory_table(url: str, asset: str | None = None, limit: int = 5000) -> pd.DataFrame:
    """Episodic memories (newest first) with their keys as float32 arrays."""
    query = sa.select(m.MemoryRow).order_by(m.MemoryRow.t_ns.desc()).limit(limit)
    if asset:
        query = query.where(m.MemoryRow.asset == asset)
    with Session(engine(url)) as session:
        rows = session.execute(query).scalars().all()
        frame = pd.DataFrame(
            [
                {
                    "id": r.id,
                    "asset": r.asset,
                    "t_ns": r.t_ns,
                    "kind": r.kind,
                    "model": r.model,
                    "key": np.frombuffer(r.key, dtype="<f4"),
                    "context": r.context,
                }
                for r in rows
            ]
        )
    return frame


def similar_memories(memories: pd.DataFrame, t_ns: int, asset: str, k: int = 5) -> pd.DataFrame:
    """The ``k`` memories of ``asset`` (same model, earlier than the one nearest ``t_ns``) whose
    latent keys are closest to it: "when did we see this before?"."""
    mine = memories[memories["asset"] == asset] if not memories.empty else memories
    if mine.empty:
        return mine
    anchor = mine.iloc[int(np.argmin(np.abs(mine["t_ns"].to_numpy() - t_ns)))]
    others = mine[(mine["id"] != anchor["id"]) & (mine["model"] == anchor["model"])]
    others = others[others["key"].map(len) == len(anchor["key"])]
    if others.empty:
        return others
    keys = np.stack(others["key"].to_numpy())
    distance = np.sqrt(np.mean((keys - anchor["key"]) ** 2, axis=1))
    result = others.assign(distance=distance).sort_values("distance").head(k)
    return result.drop(columns=["key"])


# --- models ---------------------------------------------------------------------------------------
@st.cache_data(ttl=30, show_spinner=False)
@guarded
def model_table(url: str) -> list[dict[str, Any]]:
    """The model registry, newest first, with metrics, config and lineage."""
    with Session(engine(url)) as session:
        rows = session.execute(sa.select(m.ModelRow).order_by(m.ModelRow.id.desc())).scalars().all()
        return [
            {
                "id": r.id,
                "name": r.name,
                "version": r.version,
                "ref": f"{r.name}:{r.version}",
                "scene": r.scene,
                "path": r.path,
                "created": r.created,
                "metrics": r.metrics or {},
                "config": r.config or {},
                "lineage": r.lineage or {},
            }
            for r in rows
        ]
