"""The README's main job in a real browser: `twin up` (the factory cell, tiny training preset)
serves the dashboard, the live page draws observed traces that keep moving with the worker's
predictions ahead of them, and every page renders (screenshots for docs/tour.md).

Needs Debian's ``chromium`` and ``chromium-driver`` (no browser download) and ``selenium``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FREE_PORTS = ["--pub", "tcp://127.0.0.1:0", "--sub", "tcp://127.0.0.1:0", "--control", "tcp://127.0.0.1:0"]
PAGES = ["fleet", "asset", "history", "events", "whatif", "models"]
TRACES = """
return Array.from(document.querySelectorAll('.js-plotly-plot')).map(
  p => (p._fullData || p.data || []).map(t => ({name: t.name, n: (t.x || []).length || 0,
                                 last: (t.x || []).length ? String(t.x[t.x.length - 1]) : null})));
"""

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def browser(profile: Path):
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip(
            "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
        )
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download anything
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,1700",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def start_up(home: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "JUMEAU_HOME": str(home)}
    home.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "twin.cli",
            "up",
            *FREE_PORTS,
            "--ui-port",
            "0",
            "--training",
            os.environ.get("JUMEAU_E2E_TRAINING", "tiny"),  # quick: the docs' screenshots
            "--fault-at",
            os.environ.get("JUMEAU_E2E_FAULT_AT", "15"),
            "--duration",
            # a safety net only (the test stops it with SIGINT): counted from the dashboard being
            # ready, it must outlast every wait below on a slow, busy CI machine
            os.environ.get("JUMEAU_E2E_DURATION", "900"),
        ],
        stdout=subprocess.PIPE,
        stderr=(home / "up.stderr").open("w"),
        text=True,
        env=env,
    )
    found: dict[str, str] = {}
    done = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("{") and '"ui_ready"' in line:
                found["url"] = json.loads(line)["url"]
                done.set()
        done.set()

    threading.Thread(target=read, daemon=True).start()
    bound = 200 if os.environ.get("JUMEAU_E2E_TRAINING", "tiny") == "tiny" else 600
    assert done.wait(bound) and "url" in found, "twin up never printed a ui_ready line"
    return process, found["url"]


def diagnosis(process: subprocess.Popen[str], home: Path) -> str:
    """What `twin up` was doing when a browser step failed: alive or its exit code, and its logs."""
    state = "running" if process.poll() is None else f"exited with code {process.returncode}"
    lines = [f"twin up {state}"]
    for log in [home / "up.stderr", *sorted((home / "logs").glob("*.log"))]:
        if log.exists():
            tail = log.read_text(errors="replace").splitlines()[-8:]
            lines += [f"--- {log.name}", *tail]
    return "\n".join(lines)


def wait(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def observed(driver) -> dict | None:
    for chart in driver.execute_script(TRACES) or []:
        for trace in chart:
            if trace["name"] == "observed" and trace["n"] > 0:
                return trace
    return None


def predicted(driver) -> set[str] | None:
    names = {t["name"] for chart in driver.execute_script(TRACES) or [] for t in chart if t["n"] > 0}
    return names if "predicted mean" in names else None


CHARTS = """
return Array.from(document.querySelectorAll('.js-plotly-plot')).map(p => {
  if (!p.__shot) { p.__shot = Math.random(); }
  return p.__shot;
});
"""


def shoot(driver, name: str, ready=None) -> None:
    time.sleep(1.0)  # let plotly finish its transitions
    folders = [ROOT / "artifacts" / "ui"]
    if os.environ.get("JUMEAU_E2E_DOCS"):  # the docs run replaces docs/img; CI runs leave it alone
        folders.append(ROOT / "docs" / "img")
    for _ in range(5):
        # Streamlit draws a live chart afresh on every update (a new plot element, blank until
        # drawn): prefer a shot with the same drawn charts before and after it (a few tries)
        if ready is not None:
            wait(ready, 30, f"{name} drawn")
        before = driver.execute_script(CHARTS)
        png = driver.get_screenshot_as_png()
        if ready is None or (driver.execute_script(CHARTS) == before and ready()):
            break
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.png").write_bytes(png)


def test_twin_up_serves_a_live_dashboard(tmp_path):
    started = time.monotonic()
    home = Path(os.environ.get("JUMEAU_E2E_HOME", tmp_path / "home"))
    process, url = start_up(home)
    figures: dict[str, float] = {"up_until_ui_ready_s": round(time.monotonic() - started, 1)}
    driver = browser(tmp_path / "profile")
    try:
        driver.get(f"{url}/")
        wait(
            lambda: "cartpole-1" in driver.page_source and "live" in driver.page_source, 60, "the fleet table"
        )

        started = time.monotonic()
        driver.get(f"{url}/asset?asset=cartpole-1")
        first = wait(lambda: observed(driver), 90, "the observed trace")
        figures["asset_first_paint_s"] = round(time.monotonic() - started, 2)
        # the worker's predictions reach the dashboard: its fan is drawn ahead of the observations
        names = wait(lambda: predicted(driver), 60, "the worker's predicted trace")
        assert "observed" in names and "predicted mean" in names
        # the live fragment redraws: the newest sample drawn keeps changing
        seen = {first["last"]}
        started = time.monotonic()

        def moved() -> bool:
            trace = observed(driver)
            if trace:
                seen.add(trace["last"])
            return len(seen) >= 4

        wait(moved, 60, "the observed trace to move")
        figures["asset_updates_per_s"] = round((len(seen) - 1) / (time.monotonic() - started), 2)
        wait_s = float(os.environ.get("JUMEAU_E2E_SETTLE_S", "0"))  # docs: let the fault show
        time.sleep(wait_s)
        shoot(driver, "asset", ready=lambda: predicted(driver))

        for page in ("history", "events", "whatif", "models"):
            driver.get(f"{url}/{page}")
            wait(lambda: "stApp" in driver.page_source and "Running" not in driver.title, 30, page)
            time.sleep(3.0)
            assert "Traceback" not in driver.page_source and "stException" not in driver.page_source, page
            shoot(driver, page, ready=(lambda: observed(driver)) if page == "history" else None)
        driver.get(f"{url}/")
        wait(lambda: "cartpole-1" in driver.page_source, 60, "the fleet table")
        time.sleep(3.0)
        shoot(driver, "fleet")
    except Exception as exc:  # say whether the stack was still up, and what its logs said
        raise AssertionError(f"{exc}\n{diagnosis(process, home)}") from exc
    finally:
        driver.quit()
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    (ROOT / "artifacts" / "ui").mkdir(parents=True, exist_ok=True)
    (ROOT / "artifacts" / "ui" / "figures.json").write_text(json.dumps(figures, indent=2))  # information
