"""Where the bus lives and how much it buffers: the one place for bus addresses and limits.

High-water marks are chosen per stream kind on purpose (see ``docs/protocol.md``): PUB/XPUB
sockets drop silently once a peer's queue holds HWM messages, so data streams get deep queues
(loss must be rare, and when it happens sequence numbers make it visible), camera streams a
queue bounded in bytes, and latest-state streams (status, stats) a shallow one, where only the
newest value matters. ZMQ_CONFLATE is not used: it does not support multipart messages.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

DEFAULT_PUB_ENDPOINT = "tcp://127.0.0.1:7760"
DEFAULT_SUB_ENDPOINT = "tcp://127.0.0.1:7761"
DEFAULT_CONTROL_ENDPOINT = "tcp://127.0.0.1:7762"

DATA_HWM = 100_000
"""Vector observations, actions, predictions, events: ~100k messages of a few hundred bytes."""
IMAGE_HWM = 2_000
"""Camera frames: 2,000 x 12 KiB (64x64 RGB) is ~25 MiB of buffer per peer."""
LATEST_HWM = 100
"""Latest-state streams (heartbeats, stats): only the newest value matters."""
PROXY_HWM = 200_000
"""The proxy's own sockets: deep enough to absorb bursts from every publisher at once."""


@dataclass(frozen=True, slots=True)
class BusConfig:
    """Addresses of one bus. Publishers connect to ``pub_endpoint``, subscribers to
    ``sub_endpoint``; ``control_endpoint`` answers requests (ping, schemas, probe).

    A port of ``0`` asks the bus to bind a free port; :meth:`bridge.Bus.start` returns the
    config with the real ports.
    """

    pub_endpoint: str = DEFAULT_PUB_ENDPOINT
    sub_endpoint: str = DEFAULT_SUB_ENDPOINT
    control_endpoint: str = DEFAULT_CONTROL_ENDPOINT
    hwm: int = PROXY_HWM
    heartbeat_s: float = 1.0
    request_timeout_s: float = 2.0

    def __post_init__(self) -> None:
        for name in ("pub_endpoint", "sub_endpoint", "control_endpoint"):
            value = getattr(self, name)
            if not isinstance(value, str) or "://" not in value:
                raise ValueError(f"BusConfig.{name}={value!r} is not a ZeroMQ endpoint (tcp://host:port)")
        if not isinstance(self.hwm, int) or self.hwm < 1:
            raise ValueError(f"BusConfig.hwm={self.hwm!r} must be a positive integer")
        if not self.heartbeat_s > 0:
            raise ValueError(f"BusConfig.heartbeat_s={self.heartbeat_s!r} must be > 0")
        if not self.request_timeout_s > 0:
            raise ValueError(f"BusConfig.request_timeout_s={self.request_timeout_s!r} must be > 0")

    @classmethod
    def from_env(cls, **overrides: object) -> BusConfig:
        """Defaults, then ``JUMEAU_BUS_PUB`` / ``JUMEAU_BUS_SUB`` / ``JUMEAU_BUS_CONTROL``,
        then explicit ``overrides`` (``None`` values are ignored)."""
        config = cls(
            pub_endpoint=os.environ.get("JUMEAU_BUS_PUB", DEFAULT_PUB_ENDPOINT),
            sub_endpoint=os.environ.get("JUMEAU_BUS_SUB", DEFAULT_SUB_ENDPOINT),
            control_endpoint=os.environ.get("JUMEAU_BUS_CONTROL", DEFAULT_CONTROL_ENDPOINT),
        )
        return replace(config, **{k: v for k, v in overrides.items() if v is not None})

    def env(self) -> dict[str, str]:
        """Environment variables that make a child process's ``from_env()`` find this bus."""
        return {
            "JUMEAU_BUS_PUB": self.pub_endpoint,
            "JUMEAU_BUS_SUB": self.sub_endpoint,
            "JUMEAU_BUS_CONTROL": self.control_endpoint,
        }

    @classmethod
    def local(cls, **overrides: object) -> BusConfig:
        """Loopback endpoints on free ports (tests, benchmarks, several buses on one host)."""
        return cls(
            pub_endpoint="tcp://127.0.0.1:0",
            sub_endpoint="tcp://127.0.0.1:0",
            control_endpoint="tcp://127.0.0.1:0",
            **overrides,  # type: ignore[arg-type]
        )
