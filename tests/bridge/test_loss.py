"""Loss under overload: a slow subscriber loses frames, every lost frame is counted exactly, and
nobody else (publisher, other subscribers) is held back."""

from __future__ import annotations

import threading

import numpy as np
import zmq
from busutil import TIMEOUT_S, image_schema, wait_for

from bridge import Bus, BusConfig, Observation, Publisher, Subscriber

SCHEMA = image_schema()
TOPIC = SCHEMA.data_topic


def flood(pub: Publisher, n: int) -> list[bool]:
    """Publish ``n`` camera frames as fast as possible; returns whether each was queued."""
    pixels = np.zeros((64, 64, 3), np.uint8)
    return [
        pub.publish(Observation("rig", "cam", seq, pixels, schema_id=SCHEMA.schema_id)) for seq in range(n)
    ]


def settle(sub: Subscriber, pub: Publisher, source: str, n: int) -> list[Observation]:
    """Drain ``sub`` while ``pub`` sends heartbeats, until seq ``n - 1`` is accounted for
    (received, or reported lost by a heartbeat); return the observations received."""
    received: list[Observation] = []

    def accounted() -> bool:
        pub.heartbeat()
        received.extend(m for m in sub.drain() if isinstance(m, Observation))
        counter = sub.accounting.streams.get((source, TOPIC))
        return counter is not None and counter.last_seq == n - 1

    assert wait_for(accounted), "the last frame was never accounted for"
    return received


def test_slow_subscriber_counts_every_lost_frame_exactly():
    n = 3000
    with Bus(BusConfig.local(hwm=20)) as bus:
        config = bus.config
        with (
            Subscriber(config, (TOPIC,), name="slow", hwm=20) as sub,
            Publisher(config, "flood") as pub,
        ):
            pub.announce(SCHEMA)
            assert pub.wait_subscribed(TOPIC, TIMEOUT_S)
            queued = flood(pub, n)  # the subscriber reads nothing meanwhile
            assert len(queued) == n and pub.last_seq[TOPIC] == n - 1  # the flood never blocked
            received = settle(sub, pub, "flood", n)
            counter = sub.accounting.streams[("flood", TOPIC)]
            seqs = [m.seq for m in received]
            assert seqs == sorted(set(seqs))  # in order, no duplicates
            assert counter.received == len(received)
            assert counter.gaps > 0, "nothing was lost: the test did not overload the subscriber"
            assert counter.received + counter.gaps == n
            assert sub.accounting.duplicates == 0 and sub.accounting.restarts == 0


def test_stalled_subscriber_does_not_hold_back_the_publisher_or_other_subscribers():
    n = 4000
    # default (deep) bus queues: an unthrottled flood with shallow ones loses frames to *any*
    # subscriber, which test_slow_subscriber_counts_every_lost_frame_exactly covers
    with Bus(BusConfig.local()) as bus:
        config = bus.config
        ready, done = threading.Event(), threading.Event()
        seen: list[int] = []
        reader_gaps: list[int] = []

        def read() -> None:  # its own context (I/O thread), like a separate process would have
            context = zmq.Context()
            with Subscriber(config, (TOPIC,), name="reader", context=context) as reader:
                ready.set()
                while len(seen) < n:
                    message = reader.recv(timeout_s=TIMEOUT_S)
                    if message is None:
                        break
                    seen.append(message.seq)
                reader_gaps.append(reader.accounting.gaps)
            context.term()
            done.set()

        thread = threading.Thread(target=read, name="test-reader", daemon=True)
        with (
            Subscriber(config, (TOPIC,), name="stalled", hwm=10) as stalled,
            Publisher(config, "fast") as pub,
        ):
            thread.start()
            assert ready.wait(TIMEOUT_S)
            pub.announce(SCHEMA)
            assert pub.wait_subscribed(TOPIC, TIMEOUT_S)
            queued = flood(pub, n)
            assert all(queued) and pub.dropped == 0  # the stalled peer never pushed back
            assert done.wait(2 * TIMEOUT_S), f"reader got {len(seen)} of {n}"
            assert seen == list(range(n)) and reader_gaps == [0]
            received = settle(stalled, pub, "fast", n)
            counter = stalled.accounting.streams[("fast", TOPIC)]
            assert counter.received == len(received)
            assert counter.received + counter.gaps == n
        thread.join(TIMEOUT_S)
