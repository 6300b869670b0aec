"""Child processes for ``twin up``: start, wait for a ready line, stop cleanly (never orphaned).

Each service is a ``twin <subcommand>`` run with ``sys.executable -m twin.cli``, its stderr
going to ``<home>/logs/<name>.log`` so the terminal keeps one live status line. A service may
print JSON lines on stdout (``{"event": "bus_ready", ...}``); :meth:`Service.wait_event` waits
for one with a timeout.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """How to run one service: ``twin`` arguments and extra environment."""

    name: str
    args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or not self.args:
            raise ValueError(f"service needs a name and twin arguments, got {self.name!r} {self.args!r}")


class Service:
    """A running child process; use :meth:`stop` (or a :class:`ServiceGroup`) to end it."""

    def __init__(self, spec: ServiceSpec, log_dir: Path) -> None:
        self.spec = spec
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{spec.name}.log"
        self._log_file = self.log_path.open("ab")
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        command = [sys.executable, "-m", "twin.cli", *spec.args]
        log.info("starting %s: twin %s (log %s)", spec.name, " ".join(spec.args), self.log_path)
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            env={**os.environ, **spec.env},
            start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
        )
        self._reader = threading.Thread(target=self._read_stdout, name=f"{spec.name}-stdout", daemon=True)
        self._reader.start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").strip()
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = None
            if isinstance(event, dict):
                self._events.put(event)
            elif line:
                self._log_file.write(raw)
                self._log_file.flush()

    def wait_event(self, name: str, timeout_s: float) -> dict[str, Any]:
        """The first stdout JSON line with ``"event": name``; raise if the child dies or stalls."""
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                event = self._events.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"{self.spec.name} exited with code {self.process.returncode}: {self.tail()}"
                    ) from None
                continue
            if event.get("event") == name:
                return event
        raise TimeoutError(
            f"{self.spec.name} did not report {name!r} within {timeout_s:.0f} s: {self.tail()}"
        )

    def tail(self, lines: int = 5) -> str:
        """The last lines of the service's log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGINT, then SIGTERM, then SIGKILL, each after a bounded wait; return the exit code."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if self.process.poll() is not None:
                break
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout_s if sig != signal.SIGKILL else None)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop on %s", self.spec.name, sig.name)
        self._reader.join(timeout=2.0)
        self._log_file.close()
        return self.process.returncode


class ServiceGroup:
    """Services started in order and stopped in reverse order, whatever happens."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.services: list[Service] = []

    def start(self, spec: ServiceSpec) -> Service:
        service = Service(spec, self.log_dir)
        self.services.append(service)
        return service

    def dead(self) -> list[Service]:
        return [s for s in self.services if not s.alive]

    def stop(self) -> dict[str, int]:
        codes = {}
        for service in reversed(self.services):
            codes[service.spec.name] = service.stop()
        return codes

    def __enter__(self) -> ServiceGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
