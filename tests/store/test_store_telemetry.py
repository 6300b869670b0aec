"""Store round trips on SQLite and PostgreSQL: every table, uniqueness, batched inserts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session
from storeutil import ASSET, action, event, frame, image_schema, observation, vector_schema

from twin.store import telemetry as t
from twin.store.models import ActionRow, Asset, Episode, EventRow, ObservationRow, Stream


def _episode(session: Session) -> int:
    asset_id = t.ensure_asset(session, ASSET, scene="pendulum-v1")
    return t.open_episode(session, asset_id, 1_000, source="sim", scene="pendulum-v1", seed=7)


def test_round_trip_of_every_table(engine: sa.Engine) -> None:
    with Session(engine) as session, session.begin():
        asset_id = t.ensure_asset(session, ASSET, scene="pendulum-v1")
        assert t.ensure_asset(session, ASSET) == asset_id
        t.record_stream(session, asset_id, vector_schema())
        t.record_stream(session, asset_id, image_schema())
        t.record_stream(session, asset_id, vector_schema())  # known schema: not stored again
        episode_id = t.open_episode(session, asset_id, 1_000, source="sim", controller="pid", seed=2**40)
        t.insert_observations(session, [t.observation_row(episode_id, observation(i)) for i in range(5)])
        t.insert_observations(session, [t.observation_row(episode_id, frame(i)) for i in range(3)])
        t.insert_actions(session, [t.action_row(episode_id, action(i)) for i in range(4)])
        t.insert_events(
            session, [t.event_row(event(0, category="fault", name="stuck", gain=0.5), episode_id)]
        )
        t.insert_events(session, [t.event_row(event(1))])
        t.update_episode(session, episode_id, faults=[{"name": "stuck"}], params={"seed": 7})
        closed = t.close_episode(session, episode_id, 99_000, "marker")
        assert (closed.n_observations, closed.n_actions, closed.n_events) == (8, 4, 1)

    with Session(engine) as session:
        asset = session.execute(sa.select(Asset)).scalar_one()
        assert (asset.name, asset.scene) == (ASSET, "pendulum-v1")
        streams = {s.name: s for s in session.execute(sa.select(Stream)).scalars()}
        assert set(streams) == {"state", "camera"}
        state = streams["state"]
        assert state.schema_id == vector_schema().schema_id and state.shape == [2]
        assert state.schema["sensors"][1] == {
            "name": "rate",
            "unit": "rad/s",
            "low": None,
            "high": None,
            "allow_nan": False,
            "description": "",
        }
        assert state.schema["actuators"][0]["unit"] == "N*m"
        episode = session.get_one(Episode, episode_id)
        assert (episode.seed, episode.controller, episode.ended_t_ns) == (2**40, "pid", 99_000)
        assert episode.faults == [{"name": "stuck"}] and episode.params == {"seed": 7}
        rows = session.execute(
            sa.select(ObservationRow).where(ObservationRow.stream == "state").order_by(ObservationRow.seq)
        ).scalars()
        for i, row in enumerate(rows):
            stored = t.decode_values(row.dtype, row.shape, row.data)
            np.testing.assert_array_equal(stored, observation(i).values)
            assert row.t_ns == observation(i).t_ns and row.source == "sim"
        image = session.execute(
            sa.select(ObservationRow).where(ObservationRow.stream == "camera", ObservationRow.seq == 2)
        ).scalar_one()
        np.testing.assert_array_equal(t.decode_values(image.dtype, image.shape, image.data), frame(2).values)
        act = session.execute(sa.select(ActionRow).where(ActionRow.seq == 3)).scalar_one()
        np.testing.assert_array_equal(t.decode_values(act.dtype, act.shape, act.data), action(3).values)
        events = session.execute(sa.select(EventRow).order_by(EventRow.seq)).scalars().all()
        assert [(e.category, e.episode_id) for e in events] == [("fault", episode_id), ("note", None)]
        assert events[0].params == {"gain": 0.5} and events[0].topic == "event.pendulum.fault"


def test_a_frame_written_twice_is_stored_once(engine: sa.Engine) -> None:
    with Session(engine) as session, session.begin():
        episode_id = _episode(session)
        rows = [t.observation_row(episode_id, observation(i)) for i in range(10)]
        t.insert_observations(session, rows[:6])
        t.insert_observations(session, rows)  # overlapping batch, e.g. a retry
        t.insert_observations(session, rows[3:4] * 3)  # duplicates inside one batch
        acts = [t.action_row(episode_id, action(i)) for i in range(3)]
        t.insert_actions(session, acts + acts)
        t.insert_events(session, [t.event_row(event(0)), t.event_row(event(0))])
        restarted = dataclasses.replace(event(0), t_ns=9_999)  # same source/topic/seq: a restart
        t.insert_events(session, [t.event_row(restarted)])
    with Session(engine) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(ObservationRow)) == 10
        assert session.scalar(sa.select(sa.func.count()).select_from(ActionRow)) == 3
        assert session.scalar(sa.select(sa.func.count()).select_from(EventRow)) == 2


def test_telemetry_goes_in_as_one_batched_insert(engine: sa.Engine) -> None:
    statements: list[tuple[str, bool]] = []

    def spy(_conn, _cursor, statement, _params, _context, executemany) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO OBSERVATIONS"):
            statements.append((statement, executemany))

    with Session(engine) as session, session.begin():
        episode_id = _episode(session)
        sa.event.listen(engine, "before_cursor_execute", spy)
        try:
            t.insert_observations(
                session, [t.observation_row(episode_id, observation(i)) for i in range(2_000)]
            )
        finally:
            sa.event.remove(engine, "before_cursor_execute", spy)
    assert statements and all(many for _, many in statements)
    assert len(statements) <= 2  # one executemany (psycopg may page it), not 2,000 statements
    with Session(engine) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(ObservationRow)) == 2_000


def test_telemetry_needs_an_existing_episode(engine: sa.Engine) -> None:
    with Session(engine) as session, pytest.raises(sa.exc.IntegrityError):
        t.insert_observations(session, [t.observation_row(12345, observation(0))])
        session.flush()


def test_unknown_episode_fields_are_refused(engine: sa.Engine) -> None:
    with Session(engine) as session, pytest.raises(ValueError, match="unknown episode field"):
        t.open_episode(session, 1, 0, colour="red")
