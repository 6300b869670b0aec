"""The README's main job in a real browser: `twin up` serves the dashboard, the live page draws
observed traces that keep moving, and every page renders (screenshots for docs/tour.md).

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
  p => (p.data || []).map(t => ({name: t.name, n: (t.x || []).length,
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
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "twin.cli",
            "up",
            *FREE_PORTS,
            "--ui-port",
            "0",
            "--assets",
            "2",
            "--duration",
            "150",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
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
    assert done.wait(120) and "url" in found, "twin up never printed a ui_ready line"
    return process, found["url"]


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


def shoot(driver, name: str) -> None:
    time.sleep(1.0)  # let plotly finish its transitions
    for folder in (ROOT / "artifacts" / "ui", ROOT / "docs" / "img"):
        folder.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(folder / f"{name}.png"))


def test_twin_up_serves_a_live_dashboard(tmp_path):
    process, url = start_up(tmp_path / "home")
    driver = browser(tmp_path / "profile")
    figures: dict[str, float] = {}
    try:
        driver.get(f"{url}/")
        wait(
            lambda: "cartpole-0" in driver.page_source and "live" in driver.page_source, 60, "the fleet table"
        )
        time.sleep(2.0)
        shoot(driver, "fleet")

        started = time.monotonic()
        driver.get(f"{url}/asset?asset=cartpole-0")
        first = wait(lambda: observed(driver), 30, "the observed trace")
        figures["asset_first_paint_s"] = round(time.monotonic() - started, 2)
        names = {t["name"] for chart in driver.execute_script(TRACES) for t in chart}
        assert "observed" in names
        if any(n and n.startswith("predicted") for n in names):  # only when a worker publishes predictions
            assert "predicted mean" in names
        # the live fragment redraws: count distinct newest samples over 5 s
        seen = {first["last"]}
        until = time.monotonic() + 5.0
        while time.monotonic() < until:
            trace = observed(driver)
            if trace:
                seen.add(trace["last"])
            time.sleep(0.05)
        figures["asset_updates_per_s"] = round((len(seen) - 1) / 5.0, 2)
        assert len(seen) >= 3, f"the observed trace did not move: {seen}"
        shoot(driver, "asset")

        for page in ("history", "events", "whatif", "models"):
            driver.get(f"{url}/{page}")
            wait(lambda: "stApp" in driver.page_source and "Running" not in driver.title, 30, page)
            time.sleep(3.0)
            assert "Traceback" not in driver.page_source and "stException" not in driver.page_source, page
            shoot(driver, page)
    finally:
        driver.quit()
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    (ROOT / "artifacts" / "ui").mkdir(parents=True, exist_ok=True)
    (ROOT / "artifacts" / "ui" / "figures.json").write_text(json.dumps(figures, indent=2))
    assert figures["asset_first_paint_s"] < 10
    assert figures["asset_updates_per_s"] >= 1.0
