"""predictions: the model is part of the key, so two models' predictions of one asset coexist

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23

``uq_predictions_asset_stream_origin_t_ns`` becomes ``uq_predictions_asset_stream_model_origin_t_ns``
(``asset, stream, model, origin_t_ns``): still one row per prediction whatever the retries, and the
index the dashboard seeks to read one model's predictions of a stream in time order. Downgrading
keeps, for each (asset, stream, origin), the prediction stored first (lowest id) and deletes the
others, since the old key holds one.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "uq_predictions_asset_stream_origin_t_ns"
NEW = "uq_predictions_asset_stream_model_origin_t_ns"


def upgrade() -> None:
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.drop_constraint(OLD, type_="unique")
        batch_op.create_unique_constraint(NEW, ["asset", "stream", "model", "origin_t_ns"])


def downgrade() -> None:
    op.execute(
        sa.text(
            "DELETE FROM predictions WHERE id NOT IN ("
            " SELECT min_id FROM (SELECT min(id) AS min_id FROM predictions"
            " GROUP BY asset, stream, origin_t_ns) AS firsts)"
        )
    )
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.drop_constraint(NEW, type_="unique")
        batch_op.create_unique_constraint(OLD, ["asset", "stream", "origin_t_ns"])
