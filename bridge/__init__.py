"""Jumeau's bus: typed messages over ZeroMQ with msgpack envelopes and raw array frames.

The wire format is documented in ``docs/protocol.md``; :mod:`bridge.protocol` implements it.
"""

from bridge.bus import Bus
from bridge.config import DATA_HWM, IMAGE_HWM, LATEST_HWM, BusConfig
from bridge.control import BusUnavailable, ControlClient
from bridge.messages import (
    PROTOCOL_VERSION,
    Action,
    ActuatorSpec,
    BusStats,
    Event,
    Heartbeat,
    Message,
    Observation,
    Prediction,
    SensorSpec,
    StreamSchema,
    StreamStats,
)
from bridge.protocol import REJECT_REASONS, ProtocolError, decode, encode
from bridge.publisher import Publisher
from bridge.subscriber import Subscriber

__all__ = [
    "DATA_HWM",
    "IMAGE_HWM",
    "LATEST_HWM",
    "PROTOCOL_VERSION",
    "REJECT_REASONS",
    "Action",
    "ActuatorSpec",
    "Bus",
    "BusConfig",
    "BusStats",
    "BusUnavailable",
    "ControlClient",
    "Event",
    "Heartbeat",
    "Message",
    "Observation",
    "Prediction",
    "ProtocolError",
    "Publisher",
    "SensorSpec",
    "StreamSchema",
    "StreamStats",
    "Subscriber",
    "decode",
    "encode",
]
