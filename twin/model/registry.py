"""The model registry: one SQL row per saved checkpoint (``models`` table of the store).

Functions take a session; the caller owns the commit. A model is referred to as ``name`` (its
latest version), ``name:version``, or a checkpoint path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from twin.store.models import ModelRow


def next_version(session: Session, name: str) -> int:
    latest = session.execute(select(func.max(ModelRow.version)).where(ModelRow.name == name)).scalar()
    return 1 if latest is None else int(latest) + 1


def register_model(
    session: Session,
    *,
    name: str,
    version: int,
    scene: str | None,
    path: Path,
    schema: dict[str, Any],
    config: dict[str, Any],
    lineage: dict[str, Any],
    metrics: dict[str, Any],
) -> ModelRow:
    row = ModelRow(
        name=name,
        version=version,
        scene=scene,
        path=str(path),
        schema=schema,
        config=config,
        lineage=lineage,
        metrics=metrics,
    )
    session.add(row)
    session.flush()
    return row


def find_model(session: Session, ref: str) -> ModelRow | None:
    """The row for ``name`` (latest version) or ``name:version``; None if unknown."""
    name, _, version = ref.partition(":")
    query = select(ModelRow).where(ModelRow.name == name)
    if version:
        if not version.isdigit():
            raise ValueError(f"model reference {ref!r}: version must be an integer")
        query = query.where(ModelRow.version == int(version))
    return session.execute(query.order_by(ModelRow.version.desc()).limit(1)).scalar()


def find_matching(
    session: Session, scene: str, config: dict[str, Any], lineage: dict[str, Any]
) -> ModelRow | None:
    """The newest model of ``scene`` trained with exactly this config on exactly this data.
    ``config`` is compared as stored (JSON: a tuple in it comes back as a list)."""
    config = json.loads(json.dumps(config))
    rows = session.execute(
        select(ModelRow).where(ModelRow.scene == scene).order_by(ModelRow.id.desc())
    ).scalars()
    keys = (
        "source",
        "scene",
        "episodes",
        "steps",
        "seed",
        "camera",
        "push_max",
        "action_rate",
        "options",
        "control_hz",
        "code",
    )
    for row in rows:
        same_data = all(row.lineage.get(k) == lineage.get(k) for k in keys)
        if row.config == config and same_data and Path(row.path).exists():
            return row
    return None


def update_metrics(session: Session, row: ModelRow, metrics: dict[str, Any]) -> None:
    row.metrics = {**row.metrics, **metrics}
    session.flush()
