"""Database helpers shared by test folders (import as ``from dbutil import ...``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa


@contextmanager
def postgres_schema(base_url: str) -> Iterator[str]:
    """A fresh schema of the PostgreSQL database at ``base_url``: yields a URL whose connections
    use it (``search_path``) and are labelled with its name (``application_name``), so a test
    can find and terminate them; the schema is dropped at the end."""
    schema = f"jumeau_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base_url, poolclass=sa.NullPool)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        sep = "&" if "?" in base_url else "?"
        yield f"{base_url}{sep}options=-csearch_path%3D{schema}&application_name={schema}"
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND application_name = %s",
                (schema,),
            )
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()
