"""The dashboard in real headless Chromium: first paint with a day of history, live update rate,
memory of the app process at 10 assets x 30 Hz.

One run, real pieces: a SQLite store holding a DAY of ``cartpole-0`` at 30 Hz (2.6 M rows,
bulk-inserted through the store's own insert functions), a real bus, ``twin sim`` with 10
cart-poles publishing their state at 30 Hz, ``twin ui``, and Debian's chromium driven by
Selenium. The baseline, measured in the same browser in the same run, is the first paint of a
bare Streamlit page (one ``st.write``) served the same way.

    python bench/ui.py [--minutes 0.5] [--hours 24] [--assets 10]

* ``first_paint_asset_s``: navigation to ``/asset?asset=cartpole-0`` until the observed trace
  is drawn (target < 3 s); ``first_paint_history_s``: ``/history`` (the whole day selected)
  until its observed trace is drawn;
* ``live_update_hz``: distinct newest samples the live chart shows per second (target >= 2);
* ``app_rss_growth_mb``: RSS of the ``twin ui`` process at the end minus after the warm-up, with
  the asset page open and 10 assets x 30 Hz on the bus, over ``--minutes``;
* ``ui_heavy_libraries``: which of torch and pybullet the ``twin ui`` process has mapped at the
  end (``/proc/<pid>/maps``), after every measured page ran in it: should be none.

Prints a table and ends with one JSON line (also written to bench/results/ui.json), with the
machine's 1-minute load average at the start and the end of the run beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

# `python bench/ui.py` puts bench/ first on sys.path, where bench/sim.py would shadow the ``sim``
# package (as bench/model.py notes): drop that folder.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

RESULTS = Path(__file__).parent / "results" / "ui.json"
ASSET = "cartpole-0"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
TRACES = """
return Array.from(document.querySelectorAll('.js-plotly-plot')).map(
  p => (p._fullData || p.data || []).map(t => ({name: t.name, n: (t.x || []).length || 0,
                                 last: (t.x || []).length ? String(t.x[t.x.length - 1]) : null})));
"""
BARE_APP = 'import streamlit as st\n\nst.write("bare page ready")\n'


# --- a day of history ------------------------------------------------------------------------------
def fill_day(url: str, hours: float, hz: float = 30.0, chunk: int = 100_000) -> tuple[int, int, float]:
    """One closed episode of ``cartpole-0`` ending now, ``hours`` long at ``hz``: (episode id, rows,
    seconds). Realistic values: a balanced pole with slow cart wander and sensor noise."""
    from sqlalchemy.orm import Session

    from sim.registry import make_scene
    from sim.scene import SceneConfig
    from twin.store import make_engine, upgrade
    from twin.store.telemetry import (
        close_episode,
        ensure_asset,
        insert_observations,
        open_episode,
        record_stream,
    )

    started = time.perf_counter()
    engine = make_engine(url)
    upgrade(engine)
    scene = make_scene("cartpole", SceneConfig(asset=ASSET, seed=0))
    schema = scene.schema()
    scene.close()
    n = int(hours * 3600 * hz)
    end_ns = time.time_ns() - 5_000_000_000
    start_ns = end_ns - int(n * 1e9 / hz)
    rng = np.random.default_rng(0)
    with Session(engine) as session, session.begin():
        asset_id = ensure_asset(session, ASSET, "cartpole")
        record_stream(session, asset_id, schema)
        episode = open_episode(
            session, asset_id, start_ns, scene="cartpole", seed=0, controller="default", source="sim"
        )
    for lo in range(0, n, chunk):
        k = np.arange(lo, min(n, lo + chunk))
        t = start_ns + (k * (1e9 / hz)).astype(np.int64)
        s = k / hz
        values = np.stack(
            [
                0.8 * np.sin(2 * np.pi * s / 600.0) + 0.05 * np.sin(2 * np.pi * s / 7.0),
                0.05 * np.cos(2 * np.pi * s / 7.0),
                0.02 * np.sin(2 * np.pi * s / 3.0),
                0.04 * np.cos(2 * np.pi * s / 3.0),
            ],
            axis=1,
        ) + rng.normal(0, 0.002, (len(k), 4))
        data = values.astype("<f8")
        rows = [
            {
                "episode_id": episode,
                "stream": "state",
                "source": "sim",
                "seq": int(seq),
                "t_ns": int(t_ns),
                "schema_id": schema.schema_id,
                "dtype": "<f8",
                "shape": [4],
                "data": row.tobytes(),
            }
            for seq, t_ns, row in zip(k, t, data, strict=True)
        ]
        with Session(engine) as session, session.begin():
            insert_observations(session, rows)
    with Session(engine) as session, session.begin():
        close_episode(session, episode, end_ns, "duration")
    engine.dispose()
    return episode, n, time.perf_counter() - started


def fill_predictions(url: str, hours: float, hz: float = 1.0, chunk: int = 20_000) -> int:
    """The twin's stored predictions over the same day, ``hz`` a second (more than the history page
    reads: its bounded reads must bucket them): persistence forecasts at 4 horizons with a band
    widening with the horizon and a surprise score, written as the worker writes them."""
    from sqlalchemy.orm import Session

    from twin.store import make_engine
    from twin.store.models import PredictionRow
    from twin.store.telemetry import insert_ignoring_duplicates

    engine = make_engine(url)
    horizons = np.array([0.1, 0.5, 1.0, 2.0])
    n = int(hours * 3600 * hz)
    end_ns = time.time_ns() - 5_000_000_000
    rng = np.random.default_rng(1)
    for lo in range(0, n, chunk):
        rows = []
        for k in range(lo, min(n, lo + chunk)):
            s = k / hz
            value = np.array([0.8 * np.sin(2 * np.pi * s / 600.0), 0.0, 0.0, 0.0])
            mean = np.tile(value, (len(horizons), 1))
            half = (0.02 + 0.2 * horizons)[:, None] * np.ones((1, 4))
            rows.append(
                {
                    "asset": ASSET, "stream": "state", "model": "cartpole:1", "source": "twin",
                    "origin_t_ns": end_ns - int((n - k) * 1e9 / hz), "horizons_s": horizons.tolist(),
                    "level": 0.9, "mean": mean.astype("<f8").tobytes(),
                    "lower": (mean - half).astype("<f8").tobytes(),
                    "upper": (mean + half).astype("<f8").tobytes(),
                    "surprise": float(abs(rng.normal(0, 0.4))),
                }
            )  # fmt: skip
        with Session(engine) as session, session.begin():
            insert_ignoring_duplicates(session, PredictionRow.__table__, rows)
    engine.dispose()
    return n


def stored_counts(url: str) -> tuple[int, int, float]:
    """(observations of the recorded episodes, predictions, 0 s) of a store filled earlier."""
    import sqlalchemy as sa

    from twin.store import make_engine
    from twin.store.models import Episode, PredictionRow

    engine = make_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(sa.select(sa.func.sum(Episode.n_observations))).scalar() or 0
        predictions = connection.execute(sa.select(sa.func.count()).select_from(PredictionRow)).scalar()
    engine.dispose()
    return int(rows), int(predictions or 0), 0.0


# --- processes -------------------------------------------------------------------------------------
def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=log.open("w"), text=True, env={**os.environ, **env}
    )


def wait_line(process: subprocess.Popen[str], key: str, timeout_s: float) -> dict[str, Any]:
    found: dict[str, Any] = {}
    done = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("{") and key in line and not found:
                found.update(json.loads(line))
                done.set()
        done.set()

    threading.Thread(target=read, daemon=True).start()
    if not done.wait(timeout_s) or not found:
        raise RuntimeError(f"{process.args[:4]} never printed {key} within {timeout_s:.0f} s")
    return found


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def heavy_libraries(pid: int) -> list[str]:
    """Which of torch and pybullet the process has mapped (the dashboard should map neither)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return [name for name in ("torch", "pybullet") if name in maps]


def half_rss(samples: list[tuple[float, float]]) -> float:
    """The RSS sampled nearest the middle of the memory run (MB)."""
    middle = samples[-1][0] / 2
    return min(samples, key=lambda s: abs(s[0] - middle))[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


# --- browser ---------------------------------------------------------------------------------------
def browser(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download anything
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-dev-shm-usage",
        "--window-size=1400,1200",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def until(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise RuntimeError(f"timed out after {timeout_s} s waiting for {what}")


def observed_trace(driver) -> dict | None:
    for chart in driver.execute_script(TRACES) or []:
        for trace in chart:
            if trace["name"] == "observed" and trace["n"] > 0:
                return trace
    return None


def first_paint(driver, url: str, ready, what: str) -> tuple[float, Any]:
    driver.get("about:blank")
    started = time.monotonic()
    driver.get(url)
    value = until(lambda: ready(driver), 60, what)
    return time.monotonic() - started, value


def live_rate(driver, seconds: float) -> float:
    """Distinct newest samples of the observed trace per second (each one a redraw with news)."""
    seen = set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        trace = observed_trace(driver)
        if trace:
            seen.add(trace["last"])
        time.sleep(0.02)
    return max(0, len(seen) - 1) / seconds


# --- the run ---------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=0.5, help="memory run at 10 assets x 30 Hz")
    parser.add_argument("--hours", type=float, default=24.0, help="history of cartpole-0 in the store")
    parser.add_argument("--assets", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="first paints per page (median kept)")
    parser.add_argument(
        "--store", type=Path, help="a SQLite file a previous run filled (--keep-store): reused as is"
    )
    parser.add_argument("--keep-store", type=Path, help="keep the filled SQLite file here")
    args = parser.parse_args(argv)
    load_start = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="jumeau-bench-ui-"))
    store = args.store or work / "jumeau.sqlite"
    url = f"sqlite:///{store}"
    if args.store:
        rows, prediction_rows, fill_s = stored_counts(url)
    else:
        _, rows, fill_s = fill_day(url, args.hours)
        prediction_rows = fill_predictions(url, args.hours)
    db_mb = store.stat().st_size / 2**20
    print(
        f"history: {rows:,} rows of {ASSET} ({args.hours:g} h at 30 Hz) in {fill_s:.0f} s and "
        f"{prediction_rows:,} predictions (1 Hz), {db_mb:.0f} MB"
    )

    twin = [sys.executable, "-m", "twin.cli"]
    free = ["--pub", "tcp://127.0.0.1:0", "--sub", "tcp://127.0.0.1:0", "--control", "tcp://127.0.0.1:0"]
    env = {"JUMEAU_HOME": str(work), "JUMEAU_DB": url}
    processes: list[subprocess.Popen[str]] = []
    driver = None
    try:
        bus = spawn([*twin, "bus", *free], env, work / "bus.log")
        processes.append(bus)
        ready = wait_line(bus, "bus_ready", 30)
        env.update(
            JUMEAU_BUS_PUB=ready["pub"], JUMEAU_BUS_SUB=ready["sub"], JUMEAU_BUS_CONTROL=ready["control"]
        )
        sim = [*twin, "sim", "--scene", "cartpole", "--assets", str(args.assets), "--state-hz", "30"]
        processes.append(spawn([*sim, "--camera-hz", "0", "--realtime"], env, work / "sim.log"))
        ui = spawn([*twin, "ui", "--port", "0"], env, work / "ui.log")
        processes.append(ui)
        ui_url = wait_line(ui, "ui_ready", 90)["url"]
        bare_file = work / "bare.py"
        bare_file.write_text(BARE_APP)
        bare_port = str(_free_port())
        bare = spawn(
            [sys.executable, "-m", "streamlit", "run", str(bare_file), "--server.port", bare_port,
             "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            env, work / "bare.log",
        )  # fmt: skip
        processes.append(bare)
        until(lambda: _healthy(f"http://127.0.0.1:{bare_port}"), 60, "the bare page")

        driver = browser(work / "profile")
        driver.get(ui_url)  # warm the browser's cache of Streamlit's static files, like a returning operator
        until(lambda: "Fleet" in driver.page_source, 60, "the fleet page")
        time.sleep(3)
        paints: dict[str, list[float]] = {"bare": [], "asset": [], "history": []}
        for _ in range(args.repeats):
            seconds, _ = first_paint(
                driver,
                f"http://127.0.0.1:{bare_port}/",
                lambda d: "bare page ready" in d.page_source,
                "the bare page",
            )
            paints["bare"].append(seconds)
            seconds, _ = first_paint(
                driver, f"{ui_url}/asset?asset={ASSET}", observed_trace, "the asset page"
            )
            paints["asset"].append(seconds)
            seconds, _ = first_paint(driver, f"{ui_url}/history", observed_trace, "the history page")
            paints["history"].append(seconds)
        history_points = observed_trace(driver)["n"]

        driver.get(f"{ui_url}/asset?asset={ASSET}")
        until(lambda: observed_trace(driver), 60, "the asset page")
        time.sleep(2)
        update_hz = live_rate(driver, 10.0)

        warmup_s, duration_s = 10.0, args.minutes * 60
        time.sleep(warmup_s)
        samples = [(0.0, rss_mb(ui.pid))]
        t0 = time.monotonic()
        while (elapsed := time.monotonic() - t0) < duration_s:
            time.sleep(min(10.0, duration_s - elapsed))
            samples.append((time.monotonic() - t0, rss_mb(ui.pid)))
        growth = samples[-1][1] - samples[0][1]
        still_live = observed_trace(driver) is not None
        heavy = heavy_libraries(ui.pid)
    finally:
        if driver is not None:
            driver.quit()
        for process in reversed(processes):
            stop(process)
    median = {k: float(np.median(v)) for k, v in paints.items()}
    figures = {
        "bench": "ui",
        "history_rows": rows,
        "history_prediction_rows": prediction_rows,
        "history_hours": args.hours,
        "history_points_drawn": history_points,
        "baseline_bare_streamlit_first_paint_s": round(median["bare"], 2),
        "first_paint_asset_s": round(median["asset"], 2),
        "first_paint_history_s": round(median["history"], 2),
        "live_update_hz": round(update_hz, 2),
        "assets": args.assets,
        "rate_hz": 30,
        "rss_minutes": args.minutes,
        "app_rss_start_mb": round(samples[0][1], 1),
        "app_rss_end_mb": round(samples[-1][1], 1),
        "app_rss_growth_mb": round(growth, 1),
        # bounded means a plateau: the second half of the run grows by little or nothing
        "app_rss_growth_second_half_mb": round(samples[-1][1] - half_rss(samples), 1),
        "app_rss_samples_mb": [round(mb, 1) for _, mb in samples[:: max(1, len(samples) // 30)]],
        "still_live_at_end": still_live,
        "ui_heavy_libraries": heavy,
        "load_average_1m": [round(load_start, 1), round(os.getloadavg()[0], 1)],
        "targets_met": bool(median["asset"] < 3 and update_hz >= 2),
    }
    rows_out = [
        ("bare Streamlit page, first paint (baseline)", f"{median['bare']:.2f} s", ""),
        ("asset page, first paint", f"{median['asset']:.2f} s", "< 3 s"),
        (f"history page ({args.hours:g} h, {history_points} points), first paint",
         f"{median['history']:.2f} s", ""),
        ("live update rate", f"{update_hz:.2f} Hz", ">= 2 Hz"),
        (f"app RSS growth over {args.minutes:g} min, {args.assets} x 30 Hz",
         f"{growth:+.1f} MB ({samples[0][1]:.0f} -> {samples[-1][1]:.0f})", "bounded"),
        ("  of which in the second half", f"{samples[-1][1] - half_rss(samples):+.1f} MB", "~0"),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows_out)
    print(f"{'measure':<{width}}  {'value':<24} target")
    for name, value, target in rows_out:
        print(f"{name:<{width}}  {value:<24} {target}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    if args.keep_store and not args.store:
        shutil.move(str(store), args.keep_store)
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures))
    return figures


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1.0) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False


if __name__ == "__main__":
    main()
