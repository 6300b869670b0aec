"""Fixtures of the bus tests (helpers live in ``busutil``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import zmq
from busutil import RawInjector

from bridge import BusConfig


@pytest.fixture
def injector(bus_config: BusConfig, zmq_context: zmq.Context) -> Iterator[RawInjector]:
    raw = RawInjector(bus_config, zmq_context)
    yield raw
    raw.close()
