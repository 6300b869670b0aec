"""Request/reply with the bus's control endpoint (ping, schemas, probe), with timeouts.

Requests and replies are single msgpack maps: ``{"op": ..., "id": n, ...}`` answered by
``{"ok": true|false, "id": n, ...}``. A DEALER socket is used instead of REQ so that a timed-out
request never wedges the socket; late replies are recognised by ``id`` and dropped.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any

import msgpack
import zmq

log = logging.getLogger(__name__)


class BusUnavailable(ConnectionError):
    """The bus did not answer within the timeout."""


class ControlClient:
    """A blocking request/reply client of one control endpoint. Not thread-safe."""

    def __init__(self, endpoint: str, *, timeout_s: float = 2.0, context: zmq.Context | None = None):
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self._context = context or zmq.Context.instance()
        self._ids = itertools.count(1)
        self._socket: zmq.Socket | None = None

    def _open(self) -> zmq.Socket:
        if self._socket is None:
            sock = self._context.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(self.endpoint)
            self._socket = sock
        return self._socket

    def request(self, op: str, timeout_s: float | None = None, **args: Any) -> dict[str, Any]:
        """Send ``op`` with ``args``; return the reply map or raise :class:`BusUnavailable`.

        A reply with ``ok: false`` raises ``RuntimeError`` carrying the bus's error text.
        """
        sock = self._open()
        request_id = next(self._ids)
        sock.send_multipart([b"", msgpack.packb({"op": op, "id": request_id, **args})])
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while (remaining := deadline - time.monotonic()) > 0:
            if not sock.poll(int(remaining * 1000) + 1):
                break
            frames = sock.recv_multipart()
            try:
                reply = msgpack.unpackb(frames[-1], raw=False)
            except Exception:  # a garbled reply is skipped like a late one
                log.warning("unreadable reply from bus control %s", self.endpoint)
                continue
            if not isinstance(reply, dict) or reply.get("id") != request_id:
                continue
            if not reply.get("ok", False):
                raise RuntimeError(f"bus control {op!r} failed: {reply.get('error', 'unknown error')}")
            return reply
        self.close()  # drop queued requests so a late reply cannot be taken for the next one
        raise BusUnavailable(f"bus control at {self.endpoint} did not answer {op!r} in time")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
