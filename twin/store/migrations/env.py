"""Alembic environment of the Jumeau store, run programmatically by :mod:`twin.store.migrate`.

The caller hands over an open connection in ``config.attributes["connection"]``; there is no
``alembic.ini`` and no URL here, so migrations always run against the engine the caller built
(:func:`twin.store.make_engine`). SQLite uses batch mode, so later ``ALTER`` migrations work there.
"""

from __future__ import annotations

from alembic import context

from twin.store.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run Jumeau migrations with twin.store.upgrade(engine) or `twin db upgrade`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
