"""Sequence accounting (no sockets): gaps, restarts, duplicates, heartbeats, rates."""

from __future__ import annotations

import logging

import pytest

from bridge import BusStats
from bridge.stats import StreamAccounting, format_stats

SRC, TOPIC = "pub-1", "obs.rig.imu"


def feed(acc: StreamAccounting, seqs, source: str = SRC, topic: str = TOPIC) -> list[int]:
    return [acc.accept(source, topic, seq, t_ns=1000 + seq) for seq in seqs]


def counter(acc: StreamAccounting, source: str = SRC, topic: str = TOPIC):
    return acc.streams[(source, topic)]


def test_consecutive_frames_have_no_gaps():
    acc = StreamAccounting()
    assert feed(acc, range(10)) == [0] * 10
    assert (counter(acc).received, counter(acc).gaps, counter(acc).last_seq) == (10, 0, 9)


def test_skipped_seqs_are_counted_as_lost():
    acc = StreamAccounting()
    assert feed(acc, [0, 1, 4, 5, 9]) == [0, 0, 2, 0, 3]
    assert (acc.received, acc.gaps) == (5, 5)
    assert counter(acc).last_t_ns == 1009


def test_late_joiner_starts_counting_at_its_first_seq():
    acc = StreamAccounting()
    feed(acc, [500, 501, 503])
    assert (acc.received, acc.gaps) == (3, 1)


def test_seq_back_to_zero_is_a_restart_not_a_gap(caplog):
    acc = StreamAccounting()
    with caplog.at_level(logging.INFO, logger="bridge.stats"):
        feed(acc, [0, 1, 2, 0, 1, 3])
    assert acc.restarts == 1 and acc.duplicates == 0
    assert acc.gaps == 1  # only the 2 missing after the restart
    assert any("restarted" in r.getMessage() and SRC in r.getMessage() for r in caplog.records)


def test_repeated_or_older_seq_is_a_duplicate():
    acc = StreamAccounting()
    feed(acc, [0, 1, 2, 2, 1, 2, 3])
    assert acc.duplicates == 2 and acc.restarts == 0 and acc.gaps == 0


def test_rejected_frames_advance_the_sequence_without_counting_as_received():
    acc = StreamAccounting()
    acc.accept(SRC, TOPIC, 0, 1)
    acc.accept(SRC, TOPIC, 1, 1, delivered=False)
    acc.accept(SRC, TOPIC, 2, 1)
    assert (acc.received, acc.gaps) == (2, 0)


def test_streams_are_counted_per_source_and_topic():
    acc = StreamAccounting()
    feed(acc, [0, 2], source="a")
    feed(acc, [0, 1], source="b")
    feed(acc, [5, 9], topic="obs.rig.cam", source="a")
    assert counter(acc, "a").gaps == 1 and counter(acc, "b").gaps == 0
    assert counter(acc, "a", "obs.rig.cam").gaps == 3
    assert acc.gaps == 4


def test_heartbeat_reveals_frames_lost_at_the_end_of_a_burst():
    acc = StreamAccounting()
    feed(acc, [0, 1, 2])  # 3..7 were sent, then the publisher went quiet
    assert acc.heartbeat(SRC, {TOPIC: 7}) == 5
    assert (counter(acc).gaps, counter(acc).last_seq) == (5, 7)
    assert acc.heartbeat(SRC, {TOPIC: 7}) == 0  # the same heartbeat again adds nothing
    assert feed(acc, [8]) == [0]  # and the next frame is not a gap either
    assert acc.gaps == 5


def test_heartbeat_behind_or_level_with_what_arrived_counts_nothing():
    acc = StreamAccounting()
    feed(acc, [0, 1, 2])
    assert acc.heartbeat(SRC, {TOPIC: 2}) == 0
    assert acc.heartbeat(SRC, {TOPIC: 1}) == 0  # an old heartbeat overtaken by data
    assert counter(acc).last_seq == 2 and acc.gaps == 0


def test_heartbeat_ignores_streams_never_received_and_other_sources():
    acc = StreamAccounting()
    feed(acc, [0])
    assert acc.heartbeat(SRC, {"obs.rig.other": 50}) == 0  # not subscribed / not yet seen
    assert acc.heartbeat("someone-else", {TOPIC: 50}) == 0
    assert ("someone-else", TOPIC) not in acc.streams
    assert acc.gaps == 0


def test_rejects_are_counted_by_reason_and_stream():
    acc = StreamAccounting()
    acc.reject("nan", SRC, TOPIC)
    acc.reject("nan", SRC, TOPIC)
    acc.reject("not_msgpack")  # unknown source/topic: counted by reason only
    assert acc.rejects == {"nan": 2, "not_msgpack": 1} and acc.rejected == 3
    assert counter(acc).rejected == 2
    assert list(acc.streams) == [(SRC, TOPIC)]


def test_snapshot_rates_are_per_interval(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("bridge.stats.time.monotonic", lambda: clock[0])
    acc = StreamAccounting()
    acc.snapshot()  # starts the first interval on the patched clock
    feed(acc, range(50))
    clock[0] += 2.0
    first = acc.snapshot(t_ns=7, source="mon")
    assert isinstance(first, BusStats) and (first.t_ns, first.source) == (7, "mon")
    (row,) = first.streams
    assert (row.topic, row.source, row.received, row.gaps) == (TOPIC, SRC, 50, 0)
    assert row.rate_hz == pytest.approx(25.0)
    feed(acc, [50, 51, 55])
    clock[0] += 0.5
    (row,) = acc.snapshot().streams
    assert row.rate_hz == pytest.approx(6.0)  # 3 new frames in 0.5 s, not the total
    assert (row.received, row.gaps) == (53, 3)
    clock[0] += 1.0
    assert acc.snapshot().streams[0].rate_hz == 0.0


def test_snapshot_is_immutable_and_sorted():
    acc = StreamAccounting()
    feed(acc, [0], source="b")
    feed(acc, [0], source="a")
    acc.reject("nan", "a", TOPIC)
    acc.out_of_range("a", TOPIC)
    stats = acc.snapshot()
    assert [s.source for s in stats.streams] == ["a", "b"]
    assert (stats.streams[0].rejected, stats.streams[0].out_of_range) == (1, 1)
    assert stats.rejects == {"nan": 1}
    acc.reject("nan")
    assert stats.rejects == {"nan": 1}  # a copy, not a live view


def test_format_stats_lists_every_stream_and_reject():
    acc = StreamAccounting()
    feed(acc, [0, 3])
    acc.reject("bad_version")
    text = format_stats(acc.snapshot())
    assert TOPIC in text and SRC in text and "rejects: bad_version=1" in text
    assert text.splitlines()[2].split()[-3:] == ["2", "0", "0"]  # gaps, rej, oor
