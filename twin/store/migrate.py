"""Run the store's Alembic migrations programmatically: no ``alembic.ini``, no ``create_all``.

The migration scripts ship inside the package (``twin/store/migrations``). ``upgrade(engine)``
is what ``twin db upgrade`` and ``twin record`` call; tests compare the migrated database with
:mod:`twin.store.models` so the two cannot drift apart.

Adding a table (predictions, latent state, memory, model registry...) is: add the model to
``models.py``, then ``revision(engine, "add predictions", autogenerate=True)`` against a database
at head, review the generated file in ``migrations/versions`` and commit it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from twin.store.models import Base

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config() -> Config:
    """An Alembic config pointing at the packaged migration scripts."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    return config


def head_revision() -> str:
    """The newest revision shipped with this version of Jumeau."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS}")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Migrate the database of ``engine`` to ``revision``; return the revision it is at after."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    now = current_revision(engine)
    log.info("database %s at revision %s", engine.url.render_as_string(hide_password=True), now)
    return now


def revision(engine: Engine, message: str, *, autogenerate: bool = True) -> None:
    """Write a new migration script (developer tool; the database must be at head)."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.revision(config, message=message, autogenerate=autogenerate)


def schema_differences(engine: Engine) -> list[Any]:
    """Differences between the database and the models (empty when they agree)."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))
