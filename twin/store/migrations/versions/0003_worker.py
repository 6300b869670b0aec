"""worker tables: latent state snapshots, predictions, prediction errors, episodic memory

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "latent_states",
        sa.Column("id", ID, nullable=False),
        sa.Column("asset", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("t_ns", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("schema_id", sa.String(length=32), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("z", sa.LargeBinary(), nullable=False),
        sa.Column("window", sa.LargeBinary(), nullable=False),
        sa.Column("action", sa.LargeBinary(), nullable=False),
        sa.Column("detector", sa.JSON(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_latent_states")),
        sa.UniqueConstraint(
            "asset", "stream", "t_ns", "source", name=op.f("uq_latent_states_asset_stream_t_ns_source")
        ),
    )
    with op.batch_alter_table("latent_states", schema=None) as batch_op:
        batch_op.create_index("ix_latent_states_asset_t_ns", ["asset", "t_ns"], unique=False)

    op.create_table(
        "memories",
        sa.Column("id", ID, nullable=False),
        sa.Column("asset", sa.String(length=64), nullable=False),
        sa.Column("t_ns", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memories")),
        sa.UniqueConstraint("asset", "kind", "t_ns", name=op.f("uq_memories_asset_kind_t_ns")),
    )
    with op.batch_alter_table("memories", schema=None) as batch_op:
        batch_op.create_index("ix_memories_asset_t_ns", ["asset", "t_ns"], unique=False)

    op.create_table(
        "prediction_errors",
        sa.Column("id", ID, nullable=False),
        sa.Column("asset", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("origin_t_ns", sa.BigInteger(), nullable=False),
        sa.Column("horizon_s", sa.Float(), nullable=False),
        sa.Column("target_t_ns", sa.BigInteger(), nullable=False),
        sa.Column("observed_t_ns", sa.BigInteger(), nullable=False),
        sa.Column("predicted", sa.LargeBinary(), nullable=False),
        sa.Column("observed", sa.LargeBinary(), nullable=False),
        sa.Column("error", sa.LargeBinary(), nullable=False),
        sa.Column("nrmse", sa.Float(), nullable=False),
        sa.Column("in_band", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prediction_errors")),
        sa.UniqueConstraint(
            "asset",
            "stream",
            "origin_t_ns",
            "horizon_s",
            name=op.f("uq_prediction_errors_asset_stream_origin_t_ns_horizon_s"),
        ),
    )
    with op.batch_alter_table("prediction_errors", schema=None) as batch_op:
        batch_op.create_index("ix_prediction_errors_asset_t_ns", ["asset", "target_t_ns"], unique=False)

    op.create_table(
        "predictions",
        sa.Column("id", ID, nullable=False),
        sa.Column("asset", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("origin_t_ns", sa.BigInteger(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("horizons_s", sa.JSON(), nullable=False),
        sa.Column("level", sa.Float(), nullable=False),
        sa.Column("mean", sa.LargeBinary(), nullable=False),
        sa.Column("lower", sa.LargeBinary(), nullable=False),
        sa.Column("upper", sa.LargeBinary(), nullable=False),
        sa.Column("surprise", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_predictions")),
        sa.UniqueConstraint(
            "asset", "stream", "origin_t_ns", name=op.f("uq_predictions_asset_stream_origin_t_ns")
        ),
    )
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.create_index("ix_predictions_asset_t_ns", ["asset", "origin_t_ns"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.drop_index("ix_predictions_asset_t_ns")

    op.drop_table("predictions")
    with op.batch_alter_table("prediction_errors", schema=None) as batch_op:
        batch_op.drop_index("ix_prediction_errors_asset_t_ns")

    op.drop_table("prediction_errors")
    with op.batch_alter_table("memories", schema=None) as batch_op:
        batch_op.drop_index("ix_memories_asset_t_ns")

    op.drop_table("memories")
    with op.batch_alter_table("latent_states", schema=None) as batch_op:
        batch_op.drop_index("ix_latent_states_asset_t_ns")

    op.drop_table("latent_states")
