"""The SQL tables of Jumeau, as typed SQLAlchemy 2 models: the one schema for the whole project.

History is append-only: telemetry rows are never updated; an episode row is written when the
episode opens and completed (end time, frame counts) when it closes. Telemetry is inserted with
Core batched ``insert()`` (see :mod:`twin.store.telemetry`); the ORM classes are for reading and
for the few rows written one at a time (assets, episodes).

Array values are stored (column ``data``) as raw C-order little-endian bytes with their numpy
``dtype`` string and ``shape`` (a JSON list), so any language can read them back exactly.
Timestamps of samples are integer nanoseconds since the Unix epoch (``t_ns``);
``created``/``first_seen`` are wall-clock UTC datetimes of when the row was written.

Changing this file means adding a migration in ``twin/store/migrations/versions`` (a test checks
that the migrated database equals these models).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Deterministic constraint names, so migrations can name what they alter on every dialect."""

Id = BigInteger().with_variant(Integer, "sqlite")
"""64-bit ids; on SQLite an INTEGER PRIMARY KEY (the rowid), which is what autoincrements there."""


def utcnow() -> datetime:
    """The current time as an aware UTC datetime (the default of ``created`` columns)."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of every Jumeau table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}  # noqa: RUF012


class Asset(Base):
    """A thing the twin mirrors (a pendulum, a cart, a room): known by its bus name."""

    __tablename__ = "assets"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    scene: Mapped[str | None] = mapped_column(String(128))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Stream(Base):
    """One announced schema of an asset's stream; a changed schema is a new row (history)."""

    __tablename__ = "streams"
    __table_args__ = (UniqueConstraint("asset_id", "name", "schema_id"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    schema_id: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    dtype: Mapped[str] = mapped_column(String(16))
    shape: Mapped[list[Any]] = mapped_column(JSON)
    rate_hz: Mapped[float] = mapped_column(Float)
    schema: Mapped[dict[str, Any]] = mapped_column(JSON)
    """sensors (name, unit, low, high, allow_nan), actuators (name, unit, low, high), description;
    infinite bounds are stored as null (JSON has no infinity)."""
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    first_seen_t_ns: Mapped[int] = mapped_column(BigInteger, default=0)


class Episode(Base):
    """A contiguous recording of one asset: the unit of training data and of replay."""

    __tablename__ = "episodes"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"), index=True)
    scene: Mapped[str | None] = mapped_column(String(128))
    seed: Mapped[int | None] = mapped_column(BigInteger)
    controller: Mapped[str | None] = mapped_column(String(128))
    faults: Mapped[list[Any]] = mapped_column(JSON, default=list)
    """Fault events seen during the episode: ``[{"t_ns", "name", "params"}, ...]``."""
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """Every parameter of the ``episode_start`` marker (scene, seed, controller and the rest)."""
    source: Mapped[str] = mapped_column(String(64), default="")
    recording: Mapped[str] = mapped_column(String(64), default="", index=True)
    """Id of the recorder session that wrote the episode."""
    started_t_ns: Mapped[int] = mapped_column(BigInteger)
    ended_t_ns: Mapped[int | None] = mapped_column(BigInteger)
    n_observations: Mapped[int] = mapped_column(BigInteger, default=0)
    n_actions: Mapped[int] = mapped_column(BigInteger, default=0)
    n_events: Mapped[int] = mapped_column(BigInteger, default=0)
    end_reason: Mapped[str | None] = mapped_column(String(32))
    notes: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ObservationRow(Base):
    """One sample of a stream (vector or camera frame) within an episode.

    The primary key ``(episode_id, stream, source, seq)`` is also what makes a frame written
    twice stored once (inserts use ``ON CONFLICT DO NOTHING``).
    """

    __tablename__ = "observations"
    __table_args__ = (Index("ix_observations_episode_t_ns", "episode_id", "t_ns"),)
    episode_id: Mapped[int] = mapped_column(ForeignKey("episodes.id"), primary_key=True)
    stream: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    t_ns: Mapped[int] = mapped_column(BigInteger)
    schema_id: Mapped[str] = mapped_column(String(32), default="")
    dtype: Mapped[str] = mapped_column(String(16))
    shape: Mapped[list[Any]] = mapped_column(JSON)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    """The values: raw C-order little-endian bytes of ``dtype`` and ``shape``."""


class ActionRow(Base):
    """One command to an asset's actuators within an episode (order of the schema's actuators)."""

    __tablename__ = "actions"
    __table_args__ = (Index("ix_actions_episode_t_ns", "episode_id", "t_ns"),)
    episode_id: Mapped[int] = mapped_column(ForeignKey("episodes.id"), primary_key=True)
    stream: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    t_ns: Mapped[int] = mapped_column(BigInteger)
    dtype: Mapped[str] = mapped_column(String(16))
    shape: Mapped[list[Any]] = mapped_column(JSON)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    """The values: raw C-order little-endian bytes of ``dtype`` and ``shape``."""


class EventRow(Base):
    """Something that happened to an asset: anomaly, injected fault, marker, operator note.

    Unique on ``(source, topic, seq, t_ns)``: a delivery seen twice is stored once, while a
    restarted publisher (seq back to 0, later ``t_ns``) is not mistaken for a duplicate.
    """

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("source", "topic", "seq", "t_ns"),
        Index("ix_events_asset_t_ns", "asset", "t_ns"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    asset: Mapped[str] = mapped_column(String(64))
    episode_id: Mapped[int | None] = mapped_column(ForeignKey("episodes.id"), index=True)
    t_ns: Mapped[int] = mapped_column(BigInteger)
    category: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(128))
    severity: Mapped[str] = mapped_column(String(16), default="info")
    message: Mapped[str] = mapped_column(Text, default="")
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    source: Mapped[str] = mapped_column(String(64), default="")
    topic: Mapped[str] = mapped_column(String(200))
    seq: Mapped[int] = mapped_column(BigInteger)


class ModelRow(Base):
    """A trained world model in the registry: where its checkpoint is and how good it is.

    ``name`` + ``version`` identify it (versions count up per name); ``schema`` is the stream it
    was trained on (sensors, units, actuator bounds), ``config`` its training configuration,
    ``lineage`` its training data (generated: scene, seed, counts; recorded: episode ids),
    ``metrics`` its held-out evaluation (normalised RMSE per horizon, band coverage, baselines).
    """

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("name", "version"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[int] = mapped_column(Integer)
    scene: Mapped[str | None] = mapped_column(String(128))
    path: Mapped[str] = mapped_column(Text)
    schema: Mapped[dict[str, Any]] = mapped_column(JSON)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    lineage: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LatentStateRow(Base):
    """A snapshot of one asset's state in the live worker: what a restart resumes from.

    ``z`` is the latent (float32, ``latent_dim``), ``window`` the last ``history`` control-step
    observations (float64, (history, S) SI), ``action`` the action held (float64, (A,) SI);
    ``detector`` the calibrated thresholds and running CUSUM/EWMA statistics (JSON).
    Append-only: the newest row per (asset, stream) is the state to restore.
    """

    __tablename__ = "latent_states"
    __table_args__ = (
        UniqueConstraint("asset", "stream", "t_ns", "source"),
        Index("ix_latent_states_asset_t_ns", "asset", "t_ns"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    asset: Mapped[str] = mapped_column(String(64))
    stream: Mapped[str] = mapped_column(String(64))
    t_ns: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(200))
    schema_id: Mapped[str] = mapped_column(String(32))
    step: Mapped[int] = mapped_column(BigInteger)
    z: Mapped[bytes] = mapped_column(LargeBinary)
    window: Mapped[bytes] = mapped_column(LargeBinary)
    action: Mapped[bytes] = mapped_column(LargeBinary)
    detector: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reason: Mapped[str] = mapped_column(String(32), default="periodic")
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PredictionRow(Base):
    """A published forecast of a stream: ``mean``/``lower``/``upper`` (H, S) float64 SI at
    ``horizons_s`` (JSON list) after ``origin_t_ns``, band ``level``, by ``model``. Unique per
    (asset, stream, model, origin_t_ns): a model's prediction is stored once, whatever restarts and
    retries happen, and two models predicting the same asset keep both (to be compared); the key
    is also the index that reads one model's predictions of a stream in time order."""

    __tablename__ = "predictions"
    __table_args__ = (
        UniqueConstraint("asset", "stream", "model", "origin_t_ns"),
        Index("ix_predictions_asset_t_ns", "asset", "origin_t_ns"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    asset: Mapped[str] = mapped_column(String(64))
    stream: Mapped[str] = mapped_column(String(64))
    origin_t_ns: Mapped[int] = mapped_column(BigInteger)
    model: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(64))
    horizons_s: Mapped[list[Any]] = mapped_column(JSON)
    level: Mapped[float] = mapped_column(Float)
    mean: Mapped[bytes] = mapped_column(LargeBinary)
    lower: Mapped[bytes] = mapped_column(LargeBinary)
    upper: Mapped[bytes] = mapped_column(LargeBinary)
    surprise: Mapped[float | None] = mapped_column(Float)
    """The combined surprise score at ``origin_t_ns`` (calibrated units: 1 = threshold)."""


class PredictionErrorRow(Base):
    """What arrived when a stored prediction's target time came: one row per horizon.

    ``predicted``, ``observed``, ``error`` (= observed - predicted, angles wrapped) are (S,)
    float64 SI; ``nrmse`` the RMS of the error over sensors in training standard deviations;
    ``in_band`` whether every sensor fell inside the band; ``model`` the registry name
    (``name:version``) of the model that predicted. Unique per (asset, stream, model, origin_t_ns,
    horizon_s): stored once whatever the retries, and two models on one asset keep both."""

    __tablename__ = "prediction_errors"
    __table_args__ = (
        UniqueConstraint("asset", "stream", "model", "origin_t_ns", "horizon_s"),
        Index("ix_prediction_errors_asset_t_ns", "asset", "target_t_ns"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    asset: Mapped[str] = mapped_column(String(64))
    stream: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(200), server_default="")
    origin_t_ns: Mapped[int] = mapped_column(BigInteger)
    horizon_s: Mapped[float] = mapped_column(Float)
    target_t_ns: Mapped[int] = mapped_column(BigInteger)
    observed_t_ns: Mapped[int] = mapped_column(BigInteger)
    predicted: Mapped[bytes] = mapped_column(LargeBinary)
    observed: Mapped[bytes] = mapped_column(LargeBinary)
    error: Mapped[bytes] = mapped_column(LargeBinary)
    nrmse: Mapped[float] = mapped_column(Float)
    in_band: Mapped[bool] = mapped_column(Boolean)


class MemoryRow(Base):
    """A salient moment of an asset (anomaly, operator note, periodic keyframe) kept as a
    latent key (float32, ``latent_dim``) with its context (sensor values, surprise, event)."""

    __tablename__ = "memories"
    __table_args__ = (
        UniqueConstraint("asset", "kind", "t_ns"),
        Index("ix_memories_asset_t_ns", "asset", "t_ns"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    asset: Mapped[str] = mapped_column(String(64))
    t_ns: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(200))
    key: Mapped[bytes] = mapped_column(LargeBinary)
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AcknowledgementRow(Base):
    """An operator's acknowledgement of an event (usually an anomaly), with a note.

    Append-only: acknowledging again (a second opinion, a correction) adds a row; the dashboard
    shows every row and treats an event with at least one as acknowledged.
    """

    __tablename__ = "acknowledgements"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"), index=True)
    author: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, default="")
    t_ns: Mapped[int] = mapped_column(BigInteger)
    """When it was acknowledged (wall clock, ns since the Unix epoch)."""
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
