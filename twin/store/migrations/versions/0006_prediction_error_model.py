"""prediction_errors: the model is part of the key, so two models' errors on one asset coexist

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23

Adds ``prediction_errors.model`` (the registry name of the model whose prediction came due,
``name:version``), filled for existing rows from the prediction they resolve (the predictions
table's ``(asset, stream, origin_t_ns)`` with its lowest id; ``''`` where none is left), and makes
``(asset, stream, model, origin_t_ns, horizon_s)`` the unique key: still one error per prediction
and horizon whatever the retries, and a second model predicting the same asset keeps its own.
Downgrading keeps, for each old key, the error stored first (lowest id).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "uq_prediction_errors_asset_stream_origin_t_ns_horizon_s"
NEW = "uq_prediction_errors_asset_stream_model_origin_t_ns_horizon_s"


def upgrade() -> None:
    with op.batch_alter_table("prediction_errors", schema=None) as batch_op:
        batch_op.add_column(sa.Column("model", sa.String(length=200), nullable=False, server_default=""))
    op.execute(
        sa.text(
            "UPDATE prediction_errors SET model = COALESCE(("
            " SELECT p.model FROM predictions p WHERE p.asset = prediction_errors.asset"
            " AND p.stream = prediction_errors.stream AND p.origin_t_ns = prediction_errors.origin_t_ns"
            " ORDER BY p.id LIMIT 1), '')"
        )
    )
    with op.batch_alter_table("prediction_errors", schema=None) as batch_op:
        batch_op.drop_constraint(OLD, type_="unique")
        batch_op.create_unique_constraint(NEW, ["asset", "stream", "model", "origin_t_ns", "horizon_s"])


def downgrade() -> None:
    op.execute(
        sa.text(
            "DELETE FROM prediction_errors WHERE id NOT IN ("
            " SELECT min_id FROM (SELECT min(id) AS min_id FROM prediction_errors"
            " GROUP BY asset, stream, origin_t_ns, horizon_s) AS firsts)"
        )
    )
    with op.batch_alter_table("prediction_errors", schema=None) as batch_op:
        batch_op.drop_constraint(NEW, type_="unique")
        batch_op.create_unique_constraint(OLD, ["asset", "stream", "origin_t_ns", "horizon_s"])
        batch_op.drop_column("model")
