"""Migrations: a fresh database migrated to head equals the models, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command

from twin.store.engine import make_engine
from twin.store.migrate import alembic_config, current_revision, head_revision, schema_differences, upgrade
from twin.store.models import Base


def test_upgrade_to_head_matches_models(store_url: str) -> None:
    engine = make_engine(store_url)
    try:
        assert current_revision(engine) is None
        assert upgrade(engine) == head_revision()
        assert schema_differences(engine) == []
        tables = set(sa.inspect(engine).get_table_names())
        assert set(Base.metadata.tables) <= tables
        assert upgrade(engine) == head_revision()  # idempotent
    finally:
        engine.dispose()


def test_prediction_key_migration_keeps_rows_both_ways(store_url: str) -> None:
    """0005 puts the model in the predictions key without losing stored rows; downgrading keeps
    the first-stored prediction of each (asset, stream, origin)."""
    engine = make_engine(store_url)
    insert = sa.text(
        "INSERT INTO predictions (asset, stream, origin_t_ns, model, source, horizons_s, level, mean,"
        " lower, upper) VALUES ('pole', 'state', :t, :model, 'worker', '[0.1]', 0.9, :b, :b, :b)"
    )
    try:
        upgrade(engine, "0004")
        with engine.begin() as connection:
            connection.execute(insert, [{"t": t, "model": "a:1", "b": b"\0" * 8} for t in range(3)])
        upgrade(engine)
        with engine.begin() as connection:
            connection.execute(insert, [{"t": t, "model": "b:1", "b": b"\0" * 8} for t in range(3)])
            with pytest.raises(sa.exc.IntegrityError), connection.begin_nested():
                connection.execute(insert, {"t": 0, "model": "b:1", "b": b"\0" * 8})
        assert schema_differences(engine) == []
        config = alembic_config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0004")
        with engine.connect() as connection:
            kept = connection.execute(sa.text("SELECT model, origin_t_ns FROM predictions")).all()
        assert sorted(kept) == [("a:1", 0), ("a:1", 1), ("a:1", 2)]
    finally:
        engine.dispose()


def test_prediction_error_model_migration_fills_the_model_and_keeps_rows_both_ways(store_url: str) -> None:
    """0006 puts the model in the prediction_errors key, filling it for stored rows from the
    prediction each resolves; two models' errors then coexist; downgrading keeps the first-stored
    error of each (asset, stream, origin, horizon)."""
    engine = make_engine(store_url)
    prediction = sa.text(
        "INSERT INTO predictions (asset, stream, origin_t_ns, model, source, horizons_s, level, mean,"
        " lower, upper) VALUES ('pole', 'state', :t, 'a:1', 'worker', '[0.1]', 0.9, :b, :b, :b)"
    )
    columns = (
        "asset, stream, origin_t_ns, horizon_s, target_t_ns, observed_t_ns, predicted, observed, error,"
        " nrmse, in_band"
    )
    values = "'pole', 'state', :t, 0.1, :t, :t, :b, :b, :b, 0.5, :ok"
    try:
        upgrade(engine, "0005")
        with engine.begin() as connection:
            connection.execute(prediction, [{"t": t, "b": b"\0" * 8} for t in range(2)])
            connection.execute(
                sa.text(f"INSERT INTO prediction_errors ({columns}) VALUES ({values})"),
                [{"t": t, "b": b"\0" * 8, "ok": True} for t in range(3)],  # t=2: its prediction is gone
            )
        upgrade(engine)
        assert schema_differences(engine) == []
        second = sa.text(f"INSERT INTO prediction_errors (model, {columns}) VALUES ('b:1', {values})")
        with engine.begin() as connection:
            filled = connection.execute(sa.text("SELECT origin_t_ns, model FROM prediction_errors")).all()
            assert sorted(filled) == [(0, "a:1"), (1, "a:1"), (2, "")]
            connection.execute(second, [{"t": t, "b": b"\0" * 8, "ok": False} for t in range(3)])
            with pytest.raises(sa.exc.IntegrityError), connection.begin_nested():
                connection.execute(second, {"t": 0, "b": b"\0" * 8, "ok": False})
        config = alembic_config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0005")
        with engine.connect() as connection:
            kept = connection.execute(sa.text("SELECT origin_t_ns, in_band FROM prediction_errors")).all()
        assert sorted((t, bool(ok)) for t, ok in kept) == [(0, True), (1, True), (2, True)]
    finally:
        engine.dispose()


def test_sqlite_engine_is_wal_with_foreign_keys(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'sub' / 'db.sqlite'}", busy_timeout_ms=1234)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1234
    finally:
        engine.dispose()


def test_default_url_is_a_file_in_jumeau_home(jumeau_home: str) -> None:
    engine = make_engine()
    try:
        assert engine.url.database is not None
        assert engine.url.database.startswith(jumeau_home)
    finally:
        engine.dispose()


def test_unknown_database_url_is_refused() -> None:
    with pytest.raises(ValueError, match="only sqlite"):
        make_engine("mysql://localhost/db")
