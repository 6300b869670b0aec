"""Worker fixtures: one tiny trained cartpole model per test session, and the worker's database
on each backend (a SQLite file; a fresh PostgreSQL schema under the ``services`` marker)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dbutil import postgres_schema
from workerutil import train_tiny_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a small cartpole checkpoint (trained once per session, seeded)."""
    return train_tiny_model(tmp_path_factory.mktemp("models") / "cartpole-tiny.pt")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def worker_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty worker database (the worker migrates it at start-up)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'twin.sqlite'}"
        return
    with postgres_schema(request.getfixturevalue("postgres_url")) as url:
        yield url
