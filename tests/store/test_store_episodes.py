"""Episode grouping rules (pure logic) and the writer's overflow policy, without a bus."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from storeutil import action, event, observation

from bridge.messages import Heartbeat
from twin.store.episodes import EpisodeTracker
from twin.store.recording import EpisodeClose, EpisodeOpen, EpisodeUpdate, Frame
from twin.store.writer import BatchWriter, WriterConfig


def _kinds(ops: list) -> list[str]:
    return [type(op).__name__ for op in ops]


def test_first_frame_opens_an_episode_that_stop_closes() -> None:
    tracker = EpisodeTracker("rec-1")
    ops = tracker.on_message(observation(0)) + tracker.on_message(action(0))
    assert _kinds(ops) == ["EpisodeOpen", "Frame", "Frame"]
    assert ops[0].fields["recording"] == "rec-1" and ops[0].fields["source"] == "sim"
    closing = tracker.close_all()
    assert closing == [EpisodeClose(0, action(0).t_ns, "recording_stopped")]


def test_markers_split_episodes_and_carry_metadata() -> None:
    tracker = EpisodeTracker()
    tracker.on_message(observation(0))
    start = event(5, category="marker", name="episode_start", scene="cartpole", seed="42", controller="lqr")
    ops = tracker.on_message(start)
    assert _kinds(ops) == ["EpisodeClose", "EpisodeOpen", "Frame"]
    opened = ops[1]
    assert isinstance(opened, EpisodeOpen) and opened.key == 1
    assert (opened.fields["scene"], opened.fields["seed"], opened.fields["controller"]) == (
        "cartpole",
        42,
        "lqr",
    )
    fault = tracker.on_message(event(6, category="fault", name="sensor_stuck", sensor="angle"))
    assert isinstance(fault[1], EpisodeUpdate) and fault[1].fields["faults"][0]["name"] == "sensor_stuck"
    end = tracker.on_message(event(7, category="marker", name="episode_end"))
    assert _kinds(end) == ["Frame", "EpisodeClose"] and end[1].reason == "episode_end"
    outside = tracker.on_message(event(8))
    assert outside == [Frame(None, event(8))]  # events do not open episodes
    assert tracker.on_message(observation(1))[0].key == 2  # the next frame does


def test_seq_going_back_is_a_publisher_restart() -> None:
    tracker = EpisodeTracker()
    for seq in range(3):
        tracker.on_message(observation(seq))
    assert tracker.on_message(observation(2)) == []  # duplicate delivery
    ops = tracker.on_message(observation(0))
    assert _kinds(ops) == ["EpisodeClose", "EpisodeOpen", "Frame"] and ops[0].reason == "restart"
    assert tracker.duplicates == 1


def test_closing_heartbeat_ends_the_sources_episodes() -> None:
    tracker = EpisodeTracker()
    tracker.on_message(observation(0, asset="a", source="sim"))
    tracker.on_message(observation(0, asset="b", source="other"))
    ops = tracker.on_message(Heartbeat(t_ns=1, status="closing", source="sim"))
    assert [op.reason for op in ops] == ["publisher_closed"] and tracker.open_assets == ["b"]


def test_full_queue_sheds_frames_counted_never_silently(caplog: pytest.LogCaptureFixture) -> None:
    writer = BatchWriter(engine=None, config=WriterConfig(queue_size=2, overflow="shed"))  # type: ignore[arg-type]
    frames = [Frame(0, dataclasses.replace(observation(i), values=np.zeros(2))) for i in range(5)]
    accepted = [writer.submit(op) for op in frames]
    assert accepted == [True, True, False, False, False]
    assert writer.stats.shed["queue_full"] == 3
    assert "shedding frames" in caplog.text


def test_writer_config_is_validated() -> None:
    with pytest.raises(ValueError, match="overflow"):
        WriterConfig(overflow="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        WriterConfig(batch_size=0)
