"""``twin up``: the main job on embedded defaults, with one live status line.

Starts the bus, the simulated assets, the recorder (``twin record``, into the default database)
and the dashboard (``twin ui``, headless; its URL is printed) as child processes (logs in
``<home>/logs/``), then watches the bus and prints one status line a second: per-asset message
rates, sequence gaps, rejects, faults seen. Ctrl-C (or ``--duration``) stops every child in
reverse order.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from bridge import BusConfig, Event, Subscriber
from twin import settings
from twin.services import ServiceGroup, ServiceSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UpConfig:
    """What ``twin up`` runs."""

    scene: str = "cartpole"
    assets: int = 1
    seed: int = 1
    duration_s: float = 0.0
    bus: BusConfig = field(default_factory=BusConfig)
    status_interval_s: float = 1.0
    ui: bool = True
    ui_port: int | None = None
    """Dashboard port (0: any free one; None: ``JUMEAU_UI_PORT``, else 8501 or a free one)."""
    record: bool = True

    def __post_init__(self) -> None:
        if self.assets < 1:
            raise ValueError(f"UpConfig.assets={self.assets} must be >= 1")
        if self.duration_s < 0:
            raise ValueError(f"UpConfig.duration_s={self.duration_s} must be >= 0 (0: until Ctrl-C)")
        if self.status_interval_s <= 0:
            raise ValueError(f"UpConfig.status_interval_s={self.status_interval_s} must be > 0")
        if self.ui_port is not None and not 0 <= self.ui_port <= 65535:
            raise ValueError(f"UpConfig.ui_port={self.ui_port} must be a port number (0: any free one)")


def status_line(sub: Subscriber, faults: Counter[str], uptime_s: float) -> str:
    """One line: per-asset observation rates, gaps, rejects and faults seen so far."""
    snapshot = sub.accounting.snapshot()
    rates: dict[str, float] = {}
    gaps = 0
    for stream in snapshot.streams:
        gaps += stream.gaps
        if stream.topic.startswith("obs."):
            asset = stream.topic.split(".")[1]
            rates[asset] = rates.get(asset, 0.0) + stream.rate_hz
    assets = " ".join(f"{name} {rate:.0f}/s" for name, rate in sorted(rates.items())) or "waiting for data"
    fault_text = f" | faults {sum(faults.values())}" if faults else ""
    minutes, seconds = divmod(int(uptime_s), 60)
    return (
        f"up {minutes:02d}:{seconds:02d} | {assets} | gaps {gaps} | rejects {sub.accounting.rejected}"
        f"{fault_text}"
    )


def services(config: UpConfig, bus: BusConfig) -> list[tuple[ServiceSpec, str | None]]:
    """The children after the bus, in start order, each with the ready event to wait for (None:
    don't wait). Stopped in reverse order."""
    env = bus.env()
    sim = ("sim", "--scene", config.scene, "--assets", str(config.assets), "--seed", str(config.seed))
    out: list[tuple[ServiceSpec, str | None]] = [(ServiceSpec("sim", (*sim, "--realtime"), env=env), None)]
    if config.record:
        out.append((ServiceSpec("record", ("record",), env=env), "recording"))
    # The twin worker (`twin worker`) joins here, after the recorder and before the dashboard,
    # once the main job runs it: predictions and surprise then reach the dashboard's live pages.
    if config.ui:
        port = () if config.ui_port is None else ("--port", str(config.ui_port))
        out.append((ServiceSpec("ui", ("ui", *port), env=env), "ui_ready"))
    return out


def run_up(config: UpConfig) -> int:
    """Run the stack until Ctrl-C/SIGTERM or ``duration_s``; return the exit code."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    home = settings.home()
    tty = sys.stdout.isatty()
    with ServiceGroup(home / "logs") as group:
        bus = group.start(
            ServiceSpec(
                "bus",
                (
                    "bus",
                    "--pub",
                    config.bus.pub_endpoint,
                    "--sub",
                    config.bus.sub_endpoint,
                    "--control",
                    config.bus.control_endpoint,
                ),
            )
        )
        try:
            ready = bus.wait_event("bus_ready", timeout_s=15.0)
        except (RuntimeError, TimeoutError) as exc:
            print(f"twin up: the bus did not start: {exc}", file=sys.stderr)
            return 2
        bus_config = BusConfig(
            pub_endpoint=ready["pub"], sub_endpoint=ready["sub"], control_endpoint=ready["control"]
        )
        print(json.dumps({"event": "up_ready", **bus_config.env(), "home": str(home)}), flush=True)
        for spec, ready_event in services(config, bus_config):
            service = group.start(spec)
            if ready_event is None:
                continue
            try:
                event = service.wait_event(ready_event, timeout_s=90.0)
            except (RuntimeError, TimeoutError) as exc:
                print(f"twin up: {spec.name} did not start: {exc}", file=sys.stderr)
                return 2
            if ready_event == "ui_ready":
                print(json.dumps(event), flush=True)
                print(f"twin up: dashboard at {event['url']}", flush=True)
        started = time.monotonic()
        faults: Counter[str] = Counter()
        with Subscriber(bus_config, ("obs.", "event."), name="twin-up") as sub:
            next_status = started + config.status_interval_s
            while not stop.is_set():
                if config.duration_s and time.monotonic() - started >= config.duration_s:
                    break
                message = sub.recv(timeout_s=0.1)
                for item in [message, *sub.drain()]:
                    if isinstance(item, Event) and item.category == "fault":
                        faults[item.name] += 1
                if dead := group.dead():
                    names = ", ".join(
                        f"{s.spec.name} (exit {s.process.returncode}: {s.tail(2)})" for s in dead
                    )
                    print(f"\ntwin up: stopped because a service died: {names}", file=sys.stderr)
                    return 1
                if time.monotonic() >= next_status:
                    next_status += config.status_interval_s
                    line = status_line(sub, faults, time.monotonic() - started)
                    print(f"\r{line}\033[K" if tty else line, end="" if tty else "\n", flush=True)
        print("\ntwin up: stopping", flush=True)
    return 0
