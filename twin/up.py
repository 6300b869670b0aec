"""``twin up``: the main job on embedded defaults, with one live status line.

By default it runs the factory cell (:mod:`twin.cell`: the arm, the rotor, two cart-poles). It
first makes sure the worker has a world model per scene (cached in the registry, else trained
now with a progress bar), then starts the bus, the simulated assets (a scripted fault
``fault_at_s`` into the run), the recorder (``twin record``, into the default database), the
worker (``twin worker``) and the dashboard (``twin ui``, headless; its URL is printed) as child
processes (logs in ``<home>/logs/``), then watches the bus and prints one status line a second:
per-asset message rates, predictions, sequence gaps, rejects, faults and anomalies seen.
Ctrl-C (or ``--duration``) stops every child in reverse order.
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
from twin.cell import CELL, PRESETS, CellMember, ensure_models, fault_spec
from twin.services import ServiceGroup, ServiceSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UpConfig:
    """What ``twin up`` runs."""

    scene: str = "cell"
    """``cell``: the factory cell (:data:`twin.cell.CELL`); else ``assets`` copies of one scene."""
    assets: int = 1
    seed: int = 1
    duration_s: float = 0.0
    bus: BusConfig = field(default_factory=BusConfig)
    status_interval_s: float = 1.0
    ui: bool = True
    ui_port: int | None = None
    """Dashboard port (0: any free one; None: ``JUMEAU_UI_PORT``, else 8501 or a free one)."""
    record: bool = True
    worker: bool = True
    training: str = "quick"
    """Preset for models missing from the registry (:data:`twin.cell.PRESETS`)."""
    fault_at_s: float = 60.0
    """Sim time of the cell's scripted fault (0: none)."""

    def __post_init__(self) -> None:
        if self.assets < 1:
            raise ValueError(f"UpConfig.assets={self.assets} must be >= 1")
        if self.duration_s < 0:
            raise ValueError(f"UpConfig.duration_s={self.duration_s} must be >= 0 (0: until Ctrl-C)")
        if self.status_interval_s <= 0:
            raise ValueError(f"UpConfig.status_interval_s={self.status_interval_s} must be > 0")
        if self.ui_port is not None and not 0 <= self.ui_port <= 65535:
            raise ValueError(f"UpConfig.ui_port={self.ui_port} must be a port number (0: any free one)")
        if self.training not in PRESETS:
            raise ValueError(f"UpConfig.training={self.training!r} must be one of {sorted(PRESETS)}")
        if self.fault_at_s < 0:
            raise ValueError(f"UpConfig.fault_at_s={self.fault_at_s} must be >= 0 (0: no fault)")

    def members(self) -> tuple[CellMember, ...]:
        """The ``twin sim`` children: the cell, or one scene."""
        if self.scene == "cell":
            return CELL
        return (CellMember(self.scene, self.assets, camera_hz=10.0),)


def status_line(sub: Subscriber, seen: Counter[str], uptime_s: float) -> str:
    """One line: per-asset observation rates, prediction rate, gaps, rejects, and the faults and
    anomalies seen so far (``seen`` counts event categories)."""
    snapshot = sub.accounting.snapshot()
    rates: dict[str, float] = {}
    predictions = 0.0
    gaps = 0
    for stream in snapshot.streams:
        gaps += stream.gaps
        if stream.topic.startswith("obs."):
            asset = stream.topic.split(".")[1]
            rates[asset] = rates.get(asset, 0.0) + stream.rate_hz
        elif stream.topic.startswith("pred."):
            predictions += stream.rate_hz
    assets = " ".join(f"{name} {rate:.0f}/s" for name, rate in sorted(rates.items())) or "waiting for data"
    pred_text = f" | predictions {predictions:.0f}/s" if predictions else ""
    seen_text = "".join(
        f" | {label} {seen[name]}"
        for name, label in (("fault", "faults"), ("anomaly", "anomalies"))
        if seen[name]
    )
    minutes, seconds = divmod(int(uptime_s), 60)
    return (
        f"up {minutes:02d}:{seconds:02d} | {assets}{pred_text} | gaps {gaps} | "
        f"rejects {sub.accounting.rejected}{seen_text}"
    )


def services(
    config: UpConfig, bus: BusConfig, models: list[str] | None = None
) -> list[tuple[ServiceSpec, str | None]]:
    """The children after the bus, in start order, each with the ready event to wait for (None:
    don't wait). Stopped in reverse order. ``models``: the worker's model references."""
    env = bus.env()
    out: list[tuple[ServiceSpec, str | None]] = []
    fault = config.scene == "cell" and config.fault_at_s > 0
    for member in config.members():
        args = ["sim", "--scene", member.scene, "--assets", str(member.assets), "--seed", str(config.seed)]
        args += ["--camera-hz", f"{member.camera_hz:g}", "--realtime"]
        if fault and member.scene == "cartpole":
            args += ["--fault", fault_spec(config.fault_at_s)]
        name = "sim" if len(config.members()) == 1 else f"sim-{member.scene}"
        args += ["--source", name]  # one source id per process: sequence numbers stay per publisher
        out.append((ServiceSpec(name, tuple(args), env=env), None))
    if config.record:
        out.append((ServiceSpec("record", ("record",), env=env), "recording"))
    if config.worker and models:
        refs = tuple(arg for ref in models for arg in ("--model", ref))
        out.append((ServiceSpec("worker", ("worker", *refs), env=env), "worker_ready"))
    if config.ui:
        port = () if config.ui_port is None else ("--port", str(config.ui_port))
        out.append((ServiceSpec("ui", ("ui", *port), env=env), "ui_ready"))
    return out


def prepare_models(config: UpConfig) -> list[str]:
    """The worker's models: cached in the registry, else trained now (progress bars on stderr)."""
    from twin.store import make_engine, upgrade

    engine = make_engine(settings.database_url())
    try:
        upgrade(engine)
        scenes = list(dict.fromkeys(member.scene for member in config.members()))
        return ensure_models(
            scenes, PRESETS[config.training], engine, settings.home() / "models", progress=True
        )
    finally:
        engine.dispose()


def run_up(config: UpConfig) -> int:
    """Run the stack until Ctrl-C/SIGTERM or ``duration_s``; return the exit code."""
    home = settings.home()
    tty = sys.stdout.isatty()
    models: list[str] = []
    if config.worker:
        try:
            models = prepare_models(config)
        except KeyboardInterrupt:
            print("\ntwin up: stopped while training; nothing was started", file=sys.stderr)
            return 130
        print(json.dumps({"event": "models_ready", "models": models}), flush=True)
    stop = threading.Event()  # installed after training: Ctrl-C there simply interrupts it
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
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
        for spec, ready_event in services(config, bus_config, models):
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
        seen: Counter[str] = Counter()
        with Subscriber(bus_config, ("obs.", "pred.", "event."), name="twin-up") as sub:
            next_status = started + config.status_interval_s
            while not stop.is_set():
                if config.duration_s and time.monotonic() - started >= config.duration_s:
                    break
                message = sub.recv(timeout_s=0.1)
                for item in [message, *sub.drain()]:
                    if isinstance(item, Event) and item.name != "anomaly_cleared":
                        seen[item.category] += 1
                if dead := group.dead():
                    names = ", ".join(
                        f"{s.spec.name} (exit {s.process.returncode}: {s.tail(2)})" for s in dead
                    )
                    print(f"\ntwin up: stopped because a service died: {names}", file=sys.stderr)
                    return 1
                if time.monotonic() >= next_status:
                    next_status += config.status_interval_s
                    line = status_line(sub, seen, time.monotonic() - started)
                    print(f"\r{line}\033[K" if tty else line, end="" if tty else "\n", flush=True)
        print("\ntwin up: stopping", flush=True)
    return 0
