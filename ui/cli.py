"""``twin ui``: serve the dashboard (Streamlit, headless) and announce its URL as a JSON line.

The bus and database come from the environment (``JUMEAU_BUS_*``, ``JUMEAU_DB``/``JUMEAU_HOME``),
which the Streamlit process passes to every page. Once the server answers its health check the
command prints ``{"event": "ui_ready", "url": ...}`` on stdout (what ``twin up`` waits for).
"""

from __future__ import annotations

import gc
import importlib
import json
import logging
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated

import typer

log = logging.getLogger(__name__)

DEFAULT_PORT = 8501
APP = Path(__file__).with_name("app.py")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def choose_port(host: str, port: int | None) -> int:
    """``port`` if given (0: any free one); else ``JUMEAU_UI_PORT`` or 8501, or a free port
    when that one is taken."""
    if port is not None:
        return free_port(host) if port == 0 else port
    wanted = int(os.environ.get("JUMEAU_UI_PORT", DEFAULT_PORT))
    return wanted if port_is_free(host, wanted) else free_port(host)


def announce_when_healthy(url: str, timeout_s: float = 120.0) -> None:
    """Print the ``ui_ready`` line once ``url`` answers its health check (a daemon thread)."""

    def wait() -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1.0) as reply:
                    if reply.status == 200:
                        print(json.dumps({"event": "ui_ready", "url": url}), flush=True)
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        log.error("the dashboard did not answer at %s within %.0f s", url, timeout_s)

    threading.Thread(target=wait, name="ui-ready", daemon=True).start()


VIEWS = ("fleet", "asset", "history", "events", "models", "whatif")


def preload_views(timeout_s: float = 60.0) -> None:
    """Import the pages' modules (plotly, pandas: about 2 s on a busy core) in a daemon thread once
    Streamlit's runtime exists, so the first visitor does not wait for them (the caches they
    declare then attach to that runtime, as when a page imports them)."""

    def load() -> None:
        from streamlit.runtime import Runtime

        deadline = time.monotonic() + timeout_s
        while not Runtime.exists():
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        started = time.perf_counter()
        for view in VIEWS:
            importlib.import_module(f"ui.views.{view}")
        # Streamlit runs a full gc.collect(2) after every script run, fragment reruns included
        # (three a second on the live page): scanning every object of plotly, pandas and
        # SQLAlchemy each time was 60% of the process's CPU (py-spy). Freezing what the imports
        # made moves it out of the collector's sight; what the sessions create is still collected.
        gc.collect()
        gc.freeze()
        log.info("dashboard pages preloaded in %.1f s", time.perf_counter() - started)

    threading.Thread(target=load, name="ui-preload", daemon=True).start()


def ui_command(
    port: Annotated[
        int | None, typer.Option(help="Port (0: any free one) [env JUMEAU_UI_PORT, else 8501 or a free one].")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    db: Annotated[str | None, typer.Option(help="Database URL [env JUMEAU_DB].")] = None,
    window: Annotated[float, typer.Option(min=5, help="Seconds of live data kept per stream.")] = 60.0,
) -> None:
    """Serve the operator dashboard (Streamlit, headless); prints a ui_ready JSON line with its URL."""
    from streamlit.web import cli as streamlit_cli

    chosen = choose_port(host, port)
    if db:
        os.environ["JUMEAU_DB"] = db
    os.environ["JUMEAU_UI_WINDOW_S"] = str(window)
    url = f"http://{host}:{chosen}"
    announce_when_healthy(url)
    preload_views()
    sys.argv = [
        "streamlit",
        "run",
        str(APP),
        "--server.port",
        str(chosen),
        "--server.address",
        host,
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "viewer",
    ]
    streamlit_cli.main(prog_name="streamlit")
