"""Store fixtures: the same tests run on a SQLite file and on PostgreSQL (``services`` marker).

Each PostgreSQL test gets its own schema (selected through the connection's ``search_path``),
created before and dropped after, so concurrent runs never see each other's tables.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from dbutil import postgres_schema

from twin.store.engine import make_engine
from twin.store.migrate import upgrade


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def store_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """An empty database: a SQLite file, or a fresh schema of the PostgreSQL test database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.sqlite'}"
        return
    with postgres_schema(request.getfixturevalue("postgres_url")) as url:
        yield url


@pytest.fixture
def engine(store_url: str) -> Iterator[sa.Engine]:
    """An engine on :func:`store_url`, migrated to head."""
    built = make_engine(store_url)
    upgrade(built)
    yield built
    built.dispose()
