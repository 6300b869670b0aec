"""initial store: assets, streams, episodes, observations, actions, events

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
"""64-bit ids; INTEGER PRIMARY KEY (the autoincrementing rowid) on SQLite."""

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "assets",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("scene", sa.String(length=128), nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assets")),
        sa.UniqueConstraint("name", name=op.f("uq_assets_name")),
    )
    op.create_table(
        "episodes",
        sa.Column("id", ID, nullable=False),
        sa.Column("asset_id", ID, nullable=False),
        sa.Column("scene", sa.String(length=128), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("controller", sa.String(length=128), nullable=True),
        sa.Column("faults", sa.JSON(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("recording", sa.String(length=64), nullable=False),
        sa.Column("started_t_ns", sa.BigInteger(), nullable=False),
        sa.Column("ended_t_ns", sa.BigInteger(), nullable=True),
        sa.Column("n_observations", sa.BigInteger(), nullable=False),
        sa.Column("n_actions", sa.BigInteger(), nullable=False),
        sa.Column("n_events", sa.BigInteger(), nullable=False),
        sa.Column("end_reason", sa.String(length=32), nullable=True),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["asset_id"], ["assets.id"], name=op.f("fk_episodes_asset_id_assets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_episodes")),
    )
    op.create_index(op.f("ix_episodes_asset_id"), "episodes", ["asset_id"])
    op.create_index(op.f("ix_episodes_recording"), "episodes", ["recording"])

    op.create_table(
        "streams",
        sa.Column("id", ID, nullable=False),
        sa.Column("asset_id", ID, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("schema_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("dtype", sa.String(length=16), nullable=False),
        sa.Column("shape", sa.JSON(), nullable=False),
        sa.Column("rate_hz", sa.Float(), nullable=False),
        sa.Column("schema", sa.JSON(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_seen_t_ns", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["asset_id"], ["assets.id"], name=op.f("fk_streams_asset_id_assets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_streams")),
        sa.UniqueConstraint("asset_id", "name", "schema_id", name=op.f("uq_streams_asset_id_name_schema_id")),
    )
    op.create_index(op.f("ix_streams_asset_id"), "streams", ["asset_id"])

    op.create_table(
        "actions",
        sa.Column("episode_id", ID, nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("t_ns", sa.BigInteger(), nullable=False),
        sa.Column("dtype", sa.String(length=16), nullable=False),
        sa.Column("shape", sa.JSON(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["episode_id"], ["episodes.id"], name=op.f("fk_actions_episode_id_episodes")),
        sa.PrimaryKeyConstraint("episode_id", "stream", "source", "seq", name=op.f("pk_actions")),
    )
    op.create_index("ix_actions_episode_t_ns", "actions", ["episode_id", "t_ns"])

    op.create_table(
        "events",
        sa.Column("id", ID, nullable=False),
        sa.Column("asset", sa.String(length=64), nullable=False),
        sa.Column("episode_id", ID, nullable=True),
        sa.Column("t_ns", sa.BigInteger(), nullable=False),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["episode_id"], ["episodes.id"], name=op.f("fk_events_episode_id_episodes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("source", "topic", "seq", "t_ns", name=op.f("uq_events_source_topic_seq_t_ns")),
    )
    op.create_index("ix_events_asset_t_ns", "events", ["asset", "t_ns"])
    op.create_index(op.f("ix_events_episode_id"), "events", ["episode_id"])

    op.create_table(
        "observations",
        sa.Column("episode_id", ID, nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("t_ns", sa.BigInteger(), nullable=False),
        sa.Column("schema_id", sa.String(length=32), nullable=False),
        sa.Column("dtype", sa.String(length=16), nullable=False),
        sa.Column("shape", sa.JSON(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["episode_id"], ["episodes.id"], name=op.f("fk_observations_episode_id_episodes")
        ),
        sa.PrimaryKeyConstraint("episode_id", "stream", "source", "seq", name=op.f("pk_observations")),
    )
    op.create_index("ix_observations_episode_t_ns", "observations", ["episode_id", "t_ns"])


def downgrade() -> None:
    op.drop_index("ix_observations_episode_t_ns", table_name="observations")

    op.drop_table("observations")
    op.drop_index(op.f("ix_events_episode_id"), table_name="events")
    op.drop_index("ix_events_asset_t_ns", table_name="events")

    op.drop_table("events")
    op.drop_index("ix_actions_episode_t_ns", table_name="actions")

    op.drop_table("actions")
    op.drop_index(op.f("ix_streams_asset_id"), table_name="streams")

    op.drop_table("streams")
    op.drop_index(op.f("ix_episodes_recording"), table_name="episodes")
    op.drop_index(op.f("ix_episodes_asset_id"), table_name="episodes")

    op.drop_table("episodes")
    op.drop_table("assets")
