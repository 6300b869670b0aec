"""Shared fixtures: a real bus on free loopback ports, service discovery, isolated data folders.

Tests that need PostgreSQL or Mosquitto carry the ``services`` marker and use the fixtures
below: they skip with the reason when the service is absent, except under
``JUMEAU_REQUIRE_SERVICES=1`` (CI), where an absent service is a failure.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest
import zmq

from bridge import Bus, BusConfig

REQUIRE_SERVICES = os.environ.get("JUMEAU_REQUIRE_SERVICES") == "1"
POSTGRES_URL = os.environ.get("JUMEAU_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MQTT_HOST, MQTT_PORT = "127.0.0.1", 1883


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def need_service(name: str, host: str, port: int) -> None:
    """Skip (or fail under JUMEAU_REQUIRE_SERVICES=1) when ``host:port`` does not answer."""
    if _port_open(host, port):
        return
    reason = f"{name} is not answering on {host}:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason}, and JUMEAU_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)


@pytest.fixture
def postgres_url() -> str:
    """URL of the local PostgreSQL test database (``services`` tests only)."""
    need_service("PostgreSQL", "127.0.0.1", 5432)
    return POSTGRES_URL


@pytest.fixture
def mqtt_broker() -> tuple[str, int]:
    """(host, port) of the local Mosquitto broker (``services`` tests only)."""
    need_service("Mosquitto", MQTT_HOST, MQTT_PORT)
    return MQTT_HOST, MQTT_PORT


@pytest.fixture
def bus() -> Iterator[Bus]:
    """A real bus (proxy, schema cache, control) on free loopback ports, in this process."""
    with Bus(BusConfig.local(heartbeat_s=0.2)) as running:
        yield running


@pytest.fixture
def bus_config(bus: Bus) -> BusConfig:
    """The resolved endpoints of :func:`bus`; pass ``bus_config.env()`` to child processes."""
    return bus.config


@pytest.fixture
def zmq_context() -> Iterator[zmq.Context]:
    """A private ZeroMQ context, terminated at the end (catches leaked sockets: term blocks)."""
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture
def jumeau_home(tmp_path, monkeypatch) -> str:
    """An empty JUMEAU_HOME for the test (SQLite file, checkpoints, reports)."""
    home = tmp_path / "jumeau-home"
    home.mkdir()
    monkeypatch.setenv("JUMEAU_HOME", str(home))
    monkeypatch.delenv("JUMEAU_DB", raising=False)
    return str(home)
