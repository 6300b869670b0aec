"""Small builders shared by the store tests: schemas and messages of a toy asset, publishing."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from bridge import Publisher
from bridge.messages import Action, ActuatorSpec, Event, Observation, SensorSpec, StreamSchema
from twin.store.models import ActionRow, EventRow, ObservationRow

ASSET = "pendulum"


def vector_schema(asset: str = ASSET, stream: str = "state") -> StreamSchema:
    return StreamSchema(
        asset=asset,
        stream=stream,
        kind="vector",
        dtype="<f8",
        shape=(2,),
        rate_hz=100.0,
        sensors=(SensorSpec("angle", "rad", -4.0, 4.0), SensorSpec("rate", "rad/s")),
        actuators=(ActuatorSpec("torque", "N*m", -2.0, 2.0),),
        description="toy pendulum",
    )


def image_schema(asset: str = ASSET, stream: str = "camera") -> StreamSchema:
    return StreamSchema(
        asset=asset,
        stream=stream,
        kind="image",
        dtype="|u1",
        shape=(8, 8, 3),
        rate_hz=10.0,
        sensors=(SensorSpec("r", "1", 0, 255), SensorSpec("g", "1", 0, 255), SensorSpec("b", "1", 0, 255)),
    )


def observation(seq: int, asset: str = ASSET, source: str = "sim", t0: int = 1_000) -> Observation:
    schema = vector_schema(asset)
    return Observation(
        asset=asset,
        stream="state",
        t_ns=t0 + seq * 10_000_000,
        values=np.array([0.01 * seq, -0.5 * seq]),
        schema_id=schema.schema_id,
        source=source,
        seq=seq,
    )


def frame(seq: int, asset: str = ASSET, source: str = "sim") -> Observation:
    pixels = (np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3) + seq).astype(np.uint8)
    return Observation(
        asset=asset,
        stream="camera",
        t_ns=1_000 + seq * 100_000_000,
        values=pixels,
        schema_id=image_schema(asset).schema_id,
        source=source,
        seq=seq,
    )


def action(seq: int, asset: str = ASSET, source: str = "ctl") -> Action:
    return Action(
        asset=asset, t_ns=1_500 + seq * 10_000_000, values=np.array([0.1 * seq]), source=source, seq=seq
    )


def event(seq: int, asset: str = ASSET, category: str = "note", name: str = "hello", **params) -> Event:
    return Event(
        asset=asset, t_ns=2_000 + seq, category=category, name=name, params=params, source="sim", seq=seq
    )


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def publish_episode(pub: Publisher, n: int, *, during: Callable[[int], None] | None = None) -> dict[str, int]:
    """Publish a marked episode of ``n`` steps (state + action each, a camera frame every 10)."""
    pub.announce(vector_schema())
    pub.announce(image_schema())
    assert pub.wait_subscribed(f"obs.{ASSET}.", 5)
    params = {"scene": "pendulum-v1", "seed": 3, "controller": "random"}
    pub.publish(
        Event(asset=ASSET, t_ns=time.time_ns(), category="marker", name="episode_start", params=params)
    )
    counts = {"obs": 0, "act": 0, "event": 1}
    for step in range(n):
        t_ns = time.time_ns()
        pub.publish(
            Observation(ASSET, "state", t_ns, np.array([0.01 * step, 1.0]), vector_schema().schema_id)
        )
        pub.publish(Action(ASSET, t_ns, np.array([0.1])))
        counts["obs"] += 1
        counts["act"] += 1
        if step % 10 == 0:
            pixels = np.full((8, 8, 3), step % 256, dtype=np.uint8)
            pub.publish(Observation(ASSET, "camera", t_ns, pixels, image_schema().schema_id))
            counts["obs"] += 1
        if step == n // 2:
            pub.publish(
                Event(asset=ASSET, t_ns=t_ns, category="fault", name="sensor_stuck", severity="warning")
            )
            counts["event"] += 1
        if during is not None:
            during(step)
        if step % 50 == 0:
            time.sleep(0.005)
    return counts


def stored(engine: sa.Engine) -> dict[str, int]:
    with Session(engine) as session:
        return {
            "obs": session.scalar(sa.select(sa.func.count()).select_from(ObservationRow)),
            "act": session.scalar(sa.select(sa.func.count()).select_from(ActionRow)),
            "event": session.scalar(sa.select(sa.func.count()).select_from(EventRow)),
        }
