"""The bus: an XSUB/XPUB proxy at well-known addresses, a schema cache and a control endpoint.

Publishers connect to ``pub_endpoint`` (the proxy's XSUB), subscribers to ``sub_endpoint`` (its
XPUB), so every program needs one address each way. Forwarding runs in libzmq's own proxy loop
(``zmq.proxy_steerable``, no Python per message). A service thread keeps the last schema of
every stream (a last-value cache fed by its own ``schema.`` subscription) and answers control
requests on ``control_endpoint``:

``ping``     -> ``{"ok": true, "protocol": 1, "uptime_s": ..., "endpoints": {...}}``
``schemas``  -> ``{"ok": true, "schemas": [[topic, envelope], ...]}`` (optional ``prefix``)
``probe``    -> publishes a heartbeat from ``source`` so a subscriber can see it is connected
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from dataclasses import replace
from typing import Any

import msgpack
import zmq

from bridge.config import BusConfig
from bridge.messages import PROTOCOL_VERSION, Heartbeat, StreamSchema, check_name
from bridge.protocol import ProtocolError, decode, encode

log = logging.getLogger(__name__)


def _bind(sock: zmq.Socket, endpoint: str) -> str:
    """Bind ``endpoint`` (``:0`` means a free port) and return the endpoint actually bound."""
    target = endpoint[:-2] + ":*" if endpoint.startswith("tcp://") and endpoint.endswith(":0") else endpoint
    try:
        sock.bind(target)
    except zmq.ZMQError as exc:
        raise OSError(f"bus cannot bind {endpoint}: {exc} (is another bus running there?)") from exc
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


class Bus:
    """One bus; ``start()`` binds and returns the resolved config, ``stop()`` shuts down cleanly."""

    def __init__(self, config: BusConfig | None = None, *, context: zmq.Context | None = None) -> None:
        self.requested = config or BusConfig.from_env()
        self.config = self.requested
        self._own_context = context is None
        self._context = context or zmq.Context()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._steer: zmq.Socket | None = None
        self._schemas: dict[str, tuple[StreamSchema, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._started = 0.0
        self.probes = 0

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> BusConfig:
        ctx = self._context
        tag = uuid.uuid4().hex[:8]
        xsub = ctx.socket(zmq.XSUB)
        xpub = ctx.socket(zmq.XPUB)
        control = ctx.socket(zmq.ROUTER)
        sockets = [xsub, xpub, control]
        try:
            for sock in sockets:
                sock.setsockopt(zmq.LINGER, 0)
            xsub.setsockopt(zmq.RCVHWM, self.requested.hwm)
            xsub.setsockopt(zmq.SNDHWM, self.requested.hwm)
            xpub.setsockopt(zmq.SNDHWM, self.requested.hwm)
            xpub.setsockopt(zmq.RCVHWM, self.requested.hwm)
            xpub.setsockopt(zmq.XPUB_VERBOSE, 1)  # every subscribe reaches publishers (handshakes)
            pub = _bind(xsub, self.requested.pub_endpoint)
            sub = _bind(xpub, self.requested.sub_endpoint)
            ctl = _bind(control, self.requested.control_endpoint)
            xsub.bind(f"inproc://bus-{tag}-xsub")
            xpub.bind(f"inproc://bus-{tag}-xpub")
            steer_back = ctx.socket(zmq.PAIR)
            steer_back.bind(f"inproc://bus-{tag}-steer")
            sockets.append(steer_back)
            self._steer = ctx.socket(zmq.PAIR)
            self._steer.connect(f"inproc://bus-{tag}-steer")
            cache = ctx.socket(zmq.SUB)
            cache.setsockopt(zmq.LINGER, 0)
            cache.connect(f"inproc://bus-{tag}-xpub")
            cache.setsockopt(zmq.SUBSCRIBE, b"schema.")
            injector = ctx.socket(zmq.PUB)
            injector.setsockopt(zmq.LINGER, 0)
            injector.connect(f"inproc://bus-{tag}-xsub")
            sockets += [cache, injector]
        except BaseException:
            for sock in sockets:
                sock.close(linger=0)
            if self._steer is not None:
                self._steer.close(linger=0)
                self._steer = None
            if self._own_context:
                self._context.term()
            raise
        self.config = replace(self.requested, pub_endpoint=pub, sub_endpoint=sub, control_endpoint=ctl)
        self._started = time.monotonic()
        self._threads = [
            threading.Thread(
                target=self._proxy, args=(xsub, xpub, steer_back), name="bus-proxy", daemon=True
            ),
            threading.Thread(
                target=self._serve, args=(control, cache, injector), name="bus-service", daemon=True
            ),
        ]
        for thread in self._threads:
            thread.start()
        log.info("bus up: publishers -> %s, subscribers -> %s, control -> %s", pub, sub, ctl)
        return self.config

    def stop(self) -> None:
        if self._steer is None:
            return
        self._stop.set()
        with contextlib.suppress(zmq.ZMQError):
            self._steer.send(b"TERMINATE")
        for thread in self._threads:
            thread.join(timeout=5.0)
        self._steer.close(linger=0)
        self._steer = None
        if self._own_context:
            self._context.term()
        log.info("bus stopped")

    def __enter__(self) -> Bus:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- threads -----------------------------------------------------------------------------
    @staticmethod
    def _proxy(xsub: zmq.Socket, xpub: zmq.Socket, steer: zmq.Socket) -> None:
        try:
            zmq.proxy_steerable(xsub, xpub, None, steer)
        except zmq.ZMQError as exc:
            if exc.errno != zmq.ETERM:
                log.error("bus proxy stopped on error: %s", exc)
        finally:
            for sock in (xsub, xpub, steer):
                sock.close(linger=0)

    def _serve(self, control: zmq.Socket, cache: zmq.Socket, injector: zmq.Socket) -> None:
        poller = zmq.Poller()
        poller.register(control, zmq.POLLIN)
        poller.register(cache, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                for sock, _ in poller.poll(100):
                    if sock is cache:
                        self._cache_schema(cache.recv_multipart())
                    else:
                        self._answer(control, injector)
        finally:
            for sock in (control, cache, injector):
                sock.close(linger=0)

    def _cache_schema(self, frames: list[bytes]) -> None:
        try:
            schema = decode(frames)
        except ProtocolError as exc:
            log.warning("bus: not caching a bad schema frame: %s", exc)
            return
        if isinstance(schema, StreamSchema):
            envelope = msgpack.unpackb(frames[1], raw=False)
            envelope["schema_id"] = schema.schema_id  # the id receivers compute, for any peer
            with self._lock:
                old = self._schemas.get(schema.topic)
                self._schemas[schema.topic] = (schema, envelope)
            if old is None or old[0].schema_id != schema.schema_id:
                log.info("bus: schema %s from %s (%s)", schema.topic, schema.source, schema.schema_id)

    def _answer(self, control: zmq.Socket, injector: zmq.Socket) -> None:
        frames = control.recv_multipart()
        identity, body = frames[:-1], frames[-1]
        request: object = None  # stays None when the body is not msgpack at all
        try:
            request = msgpack.unpackb(body, raw=False)
            if not isinstance(request, dict):
                raise ValueError("request is not a msgpack map")
            reply = self._handle(request, injector)
        except Exception as exc:  # any bad request gets an error reply, never kills the service
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        reply["id"] = request.get("id") if isinstance(request, dict) else None
        control.send_multipart([*identity, msgpack.packb(reply)])

    def _handle(self, request: dict[str, Any], injector: zmq.Socket) -> dict[str, Any]:
        op = request.get("op")
        if op == "ping":
            return {
                "ok": True,
                "protocol": PROTOCOL_VERSION,
                "uptime_s": time.monotonic() - self._started,
                "endpoints": {
                    "pub": self.config.pub_endpoint,
                    "sub": self.config.sub_endpoint,
                    "control": self.config.control_endpoint,
                },
                "schemas": len(self._schemas),
            }
        if op == "schemas":
            prefix = request.get("prefix", "")
            if not isinstance(prefix, str):
                raise ValueError("prefix must be a string")
            with self._lock:
                rows = [[t, env] for t, (_, env) in sorted(self._schemas.items()) if t.startswith(prefix)]
            return {"ok": True, "schemas": rows}
        if op == "probe":
            source = check_name("source", request.get("source"))
            self.probes += 1
            injector.send_multipart(
                encode(Heartbeat(t_ns=time.time_ns(), role="probe", source=source, seq=0))
            )
            return {"ok": True}
        raise ValueError(f"unknown op {op!r} (ping, schemas, probe)")

    @property
    def schemas(self) -> dict[str, StreamSchema]:
        with self._lock:
            return {topic: schema for topic, (schema, _) in self._schemas.items()}
