"""Twin worker benchmark: latency, ingestion, restart and detection quality, side by side in one run.

Live part (real processes: ``twin bus``, ``twin sim``, ``twin worker``, SQLite store):

* ``e2e_p99_ms``: 10 cartpoles at 30 Hz in real time; for every prediction received on the bus,
  its arrival (wall clock) minus the time stamp of the observation it used (the sim stamps an
  observation with its sim time, start wall clock + ticks / rate, i.e. when it leaves the sim;
  the sim's own lateness is included);
* ``restart_s``: the worker is killed (SIGKILL) while the sim keeps running and started again;
  time from the new process's start to its first prediction on the bus (seen from outside);
  the new worker's ``worker_ready`` line is recorded too;
* ``ingest_obs_per_s``: ``--ingest-assets`` cartpoles at 30 Hz in real time (offered load); the
  observations the worker ingested per second, with the rows it stored (predictions and their
  errors) counted in the database afterwards.

Detection part (offline, :mod:`twin.worker.evaluation` and :mod:`twin.worker.replay`: the
worker's own evidence and detector code on simulated episodes of the fault library, each with a
nominal twin; long nominal runs for false alarms). Ablation variants of the detector, the
rolling z-score and the supervised sensor-space MLP residual are scored on the same episodes.

    python bench/worker.py [--model cartpole] [--seeds 8] [--fa-hours 1] [--skip-live]

Needs a trained cartpole model (``twin train --scene cartpole``; neural baselines on, the default).
Prints tables, writes docs/img/worker_detection.png, ends with ONE JSON line (also written to
bench/results/worker.json; per-fault tables and the ablation in worker_details.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# Run as ``python bench/worker.py``, this file's folder comes first on sys.path, and its sim.py
# would shadow the ``sim`` package; drop that folder (as bench/sim.py does).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import numpy as np  # noqa: E402

from bridge import BusConfig, Prediction, Subscriber  # noqa: E402
from twin.model.api import checkpoint_path  # noqa: E402
from twin.worker.calibrate import ReferenceConfig, reference_ratios  # noqa: E402
from twin.worker.config import DetectorConfig  # noqa: E402
from twin.worker.evaluation import (  # noqa: E402
    CARTPOLE_FAULTS,
    CONTROL_HZ,
    auroc,
    first_onsets,
    mlp_scores,
    simulate,
    window_max,
    zscore_scores,
)
from twin.worker.inference import ModelAdapter  # noqa: E402
from twin.worker.profile import DetectorProfile, fit_profile  # noqa: E402
from twin.worker.replay import replay_detector, replay_evidence  # noqa: E402

log = logging.getLogger("bench.worker")
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "worker.json"
DETAILS = ROOT / "bench" / "results" / "worker_details.json"
FIGURE = ROOT / "docs" / "img" / "worker_detection.png"
ARMED_TO_FAULT_S = 2.0
"""The fault comes this long after the detector is armed (calibration over)."""
WINDOW_S = 5.0
FULL = "twin (full: + open loop)"
PROFILED = "twin + reference profile"
INFERRED = "twin + profile, actions inferred"
PLAIN = "twin + profile, residuals in training stds"
WITH_CUSUM = "twin + profile, CUSUM alarms too"
WITHOUT_CONSISTENCY = "twin + profile, no consistency"

ONE_STEP = ("instant", "peak", "jump", "cusum", "ewma", "stuck")
VARIANTS: dict[str, DetectorConfig] = {
    "latent only": DetectorConfig(statistics=("instant",), sensor_weight=0.0, latent_weight=1.0),
    "sensor residual": DetectorConfig(statistics=("instant", "peak"), latent_weight=0.0),
    "sensor + latent": DetectorConfig(statistics=("instant", "peak")),
    "+ jump": DetectorConfig(statistics=("instant", "peak", "jump")),
    "+ CUSUM": DetectorConfig(statistics=("instant", "peak", "jump", "cusum")),
    "+ EWMA": DetectorConfig(statistics=("instant", "peak", "jump", "cusum", "ewma")),
    "+ stuck (one-step only)": DetectorConfig(statistics=ONE_STEP),
    "open loop only": DetectorConfig(statistics=("horizon",)),
    "consistency only": DetectorConfig(statistics=("consistency",)),
    FULL: DetectorConfig(),
}
"""Ablations, each a :class:`DetectorConfig` the worker could run, on per-asset calibration alone;
the last is the default. Every variant sees the applied actions (as with a controller on the
bus). :data:`PROFILED` is what the worker runs: the default detector with the model's reference
profile (``twin calibrate-detector``; fitted in the run when the model has none), the headline;
:data:`INFERRED` the same on evidence computed with the actions inferred; :data:`PLAIN` the same
with residuals in training stds instead of the model's predicted error (``residual_units``,
the default before 2026-12-04), with a profile of its own; :data:`WITH_CUSUM` the default
with CUSUM among the alarming statistics (as before 2026-12-04), also with its own profile;
:data:`WITHOUT_CONSISTENCY` the default without the sensors' relations to one another (as before
2026-12-05), with its own profile."""


# --- live processes ------------------------------------------------------------------------------
def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "twin.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


_LINES: dict[int, queue.Queue[str | None]] = {}
"""Per child (pid), its stdout lines, read by a thread: waiting for a line keeps its deadline."""


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str | None]:
    if proc.pid not in _LINES:
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)  # end of output

        threading.Thread(target=pump, daemon=True).start()
        _LINES[proc.pid] = lines
    return _LINES[proc.pid]


def _json_line(proc: subprocess.Popen[str], event: str, timeout_s: float = 120.0) -> dict[str, Any]:
    lines = _lines(proc)
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            lines.put(None)  # later callers see the end too
            break
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("event") == event:
            return data
    raise RuntimeError(f"no {event} line from {proc.args} within {timeout_s} s (rc={proc.poll()})")


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> str:
    """Signal the child, wait for it, and return the rest of its output."""
    if proc.poll() is None:
        proc.send_signal(sig)
    lines = _lines(proc)
    proc.wait(timeout=60)
    rest = []
    while (line := lines.get(timeout=10)) is not None:
        rest.append(line)
    lines.put(None)
    return "".join(rest)


class PredictionClock:
    """Receives predictions in a thread: (arrival - origin) latency, and first arrival times."""

    def __init__(self, bus: BusConfig) -> None:
        self.bus = bus
        self.latencies: list[tuple[float, float]] = []
        self.stamped: list[tuple[float, float]] = []
        """(arrival, ms from the observation's stamp to the worker stamping its prediction)."""
        self.arrivals: list[float] = []
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with Subscriber(self.bus, ("pred.",), name="bench-pred") as sub:
            self.ready.set()
            while not self.stop.is_set():
                message = sub.recv(timeout_s=0.1)
                if isinstance(message, Prediction):
                    now = time.time_ns()
                    self.latencies.append((time.monotonic(), (now - message.origin_t_ns) / 1e6))
                    self.stamped.append((time.monotonic(), (message.t_ns - message.origin_t_ns) / 1e6))
                    self.arrivals.append(time.monotonic())

    def __enter__(self) -> PredictionClock:
        self.thread.start()
        self.ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)


def _sim_args(assets: int, seconds: float, seed: int) -> list[str]:
    return [
        "sim",
        "--scene",
        "cartpole",
        "--assets",
        str(assets),
        "--realtime",
        "--state-hz",
        "30",
        "--camera-hz",
        "0",
        "--duration",
        str(seconds),
        "--seed",
        str(seed),
    ]


def live(
    model: str,
    assets: int,
    e2e_s: float,
    ingest_assets: int,
    ingest_s: float,
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Latency, restart and ingestion through real processes; ``extra``: more `twin worker` options."""
    import sqlalchemy as sa

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as home:
        env = {**os.environ, "JUMEAU_HOME": home, "PYTHONUNBUFFERED": "1"}
        for key in ("JUMEAU_BUS_PUB", "JUMEAU_BUS_SUB", "JUMEAU_BUS_CONTROL"):
            env[key] = {"JUMEAU_BUS_PUB": "tcp://127.0.0.1:0", "JUMEAU_BUS_SUB": "tcp://127.0.0.1:0"}.get(
                key, "tcp://127.0.0.1:0"
            )
        bus = _spawn(["bus"], env)
        try:
            ready = _json_line(bus, "bus_ready", 30)
            config = BusConfig(
                pub_endpoint=ready["pub"], sub_endpoint=ready["sub"], control_endpoint=ready["control"]
            )
            env.update(config.env())
            db = f"sqlite:///{home}/twin.sqlite"
            worker_args = ["worker", "--model", model, "--db", db, *extra]
            with PredictionClock(config) as clock:
                # 1. latency with `assets` cartpoles, then 2. kill -9 and restart under the same load
                worker = _spawn(worker_args, env)
                _json_line(worker, "worker_ready")
                warm_s = 3.0
                sim = _spawn(_sim_args(assets, warm_s + e2e_s + 15.0, 1), env)
                _json_line(sim, "sim_ready", 60)
                started = time.monotonic()
                time.sleep(warm_s + e2e_s)
                lat = [ms for t, ms in clock.latencies if t >= started + warm_s]
                out["e2e_predictions"] = len(lat)
                out["e2e_p50_ms"] = round(float(np.percentile(lat, 50)), 2) if lat else None
                out["e2e_p99_ms"] = round(float(np.percentile(lat, 99)), 2) if lat else None
                out["e2e_max_ms"] = round(float(np.max(lat)), 2) if lat else None
                # how much of it is before the worker publishes (sim, bus in, queue, compute)
                made = [ms for t, ms in clock.stamped if t >= started + warm_s]
                out["e2e_to_publish_p50_ms"] = round(float(np.percentile(made, 50)), 2) if made else None
                out["e2e_to_publish_p99_ms"] = round(float(np.percentile(made, 99)), 2) if made else None
                worker.kill()
                worker.wait()
                killed = time.monotonic()
                worker = _spawn(worker_args, env)
                ready_line = _json_line(worker, "worker_ready")
                deadline = killed + 90.0
                while time.monotonic() < deadline and not any(t > killed for t in clock.arrivals[-50:]):
                    time.sleep(0.005)
                first = next((t for t in clock.arrivals if t > killed), None)
                out["restart_s"] = round(first - killed, 3) if first else None
                out["worker_ready_after_restart"] = ready_line
                out["restart_process_s"] = ready_line.get("process_s")
                try:
                    serving = _json_line(worker, "worker_serving", 10)
                    out["restart_first_prediction_s"] = serving.get("first_prediction_s")
                except RuntimeError:
                    out["restart_first_prediction_s"] = None
                _stop(sim)
                _stop(worker)
            # 3. ingestion: offered load of `ingest_assets` x 30 Hz, everything stored
            db2 = f"sqlite:///{home}/ingest.sqlite"
            worker = _spawn(["worker", "--model", model, "--db", db2, *extra], env)
            _json_line(worker, "worker_ready")
            sim = _spawn(_sim_args(ingest_assets, ingest_s, 2), env)
            sim_ready = _json_line(sim, "sim_ready", 60)
            del sim_ready
            sim_stats = _json_line(sim, "sim_stopped", ingest_s + 120)
            sim.wait(30)
            time.sleep(1.0)
            stopped = json.loads(
                next(line for line in _stop(worker).splitlines()[::-1] if '"worker_stopped"' in line)
            )
            engine = sa.create_engine(db2)
            with engine.connect() as connection:
                predictions = connection.execute(sa.text("select count(*) from predictions")).scalar_one()
                errors = connection.execute(sa.text("select count(*) from prediction_errors")).scalar_one()
            engine.dispose()
            offered = ingest_assets * CONTROL_HZ * ingest_s
            out.update(
                ingest_obs_per_s=round(stopped["observations"] / max(sim_stats["wall_s"], 1e-9), 1),
                ingest_forecast_steps_per_s=round(stopped["steps"] / max(sim_stats["wall_s"], 1e-9), 1),
                ingest_offered_obs=int(offered),
                ingest_worker_obs=stopped["observations"],
                ingest_sim_wall_s=sim_stats["wall_s"],
                ingest_predictions_stored=predictions,
                ingest_errors_stored=errors,
                ingest_worker_stopped=stopped,
            )
        finally:
            _stop(bus)
    return out


def _finite(value: float) -> float | None:
    return round(float(value), 3) if np.isfinite(value) else None


# --- detection -------------------------------------------------------------------------------------
def fault_time_s(cfg: DetectorConfig, history: int) -> float:
    """When the bench injects its faults: ``ARMED_TO_FAULT_S`` after calibration ends, whole s."""
    armed = (history + 1 + cfg.warmup_steps + cfg.calibration_steps) / CONTROL_HZ
    return float(np.ceil(armed + ARMED_TO_FAULT_S))


def profile_of(model: ModelAdapter, cfg: DetectorConfig, own: bool = False) -> tuple[DetectorProfile, str]:
    """The model's stored reference profile if it holds for ``cfg`` (and not ``own``), else one
    fitted here (not stored), and a line saying which."""
    profile, line = model.profile_for(cfg)
    if profile is not None and not own:
        return profile, "stored with the model"
    log.warning("%s; fitting one in this run (not stored)", line if profile is None else "own profile")
    reference = ReferenceConfig()
    ratios = reference_ratios(model, cfg, reference, "cartpole")
    profile = fit_profile(ratios, cfg, CONTROL_HZ, reference.per_hour, reference.block_steps)
    return (
        profile,
        f"fitted in this run (seeds {reference.seed}+, {reference.runs} x {reference.seconds:g} s)",
    )


def detection(model: ModelAdapter, seeds: int, fa_hours: float, fa_runs: int) -> dict[str, Any]:
    cfg = VARIANTS[FULL]
    fault_s = fault_time_s(cfg, model.history)
    fault_step = round(fault_s * CONTROL_HZ)
    window = round(WINDOW_S * CONTROL_HZ)
    steps = fault_step + window
    calib = slice(cfg.warmup_steps + model.history, cfg.warmup_steps + model.history + cfg.calibration_steps)
    seed_list = list(range(1000, 1000 + seeds))
    cases = CARTPOLE_FAULTS
    started = time.perf_counter()
    episodes = simulate(
        seed_list * (len(cases) + 1),
        steps,
        [None] * seeds + [c.spec for c in cases for _ in seed_list],
        fault_s,
    )
    horizons = cfg.horizons
    plain = dataclasses.replace(cfg, residual_units="training_std")
    evidence = replay_evidence(model, episodes.observed, episodes.actions, horizons, cfg.scaled)
    inferred = replay_evidence(model, episodes.observed, None, horizons, cfg.scaled)
    plain_evidence = replay_evidence(model, episodes.observed, episodes.actions, horizons, plain.scaled)
    sim_s = time.perf_counter() - started
    started = time.perf_counter()
    profile, profile_source = profile_of(model, cfg)
    plain_profile, _ = profile_of(model, plain)
    with_cusum = dataclasses.replace(cfg, statistics=(*cfg.statistics, "cusum"))
    cusum_profile, _ = profile_of(model, with_cusum)
    without = dataclasses.replace(cfg, statistics=tuple(k for k in cfg.statistics if k != "consistency"))
    without_profile, _ = profile_of(model, without, own=True)  # the budget split over one fewer
    profile_s = time.perf_counter() - started
    limits = model.limits
    nominal = slice(0, seeds)
    scores: dict[str, np.ndarray] = {}
    onsets: dict[str, np.ndarray] = {}
    runs = [
        *((name, variant, evidence, None) for name, variant in VARIANTS.items()),
        (PROFILED, cfg, evidence, profile),
        (INFERRED, cfg, inferred, profile),
        (PLAIN, plain, plain_evidence, plain_profile),
        (WITH_CUSUM, with_cusum, evidence, cusum_profile),
        (WITHOUT_CONSISTENCY, without, evidence, without_profile),
    ]
    for name, variant, source, scale in runs:
        found = replay_detector(source, variant, model.sensors, model.periods, scale, limits)
        scores[name], onsets[name] = found.score, found.onset
    scores["zscore"] = zscore_scores(episodes.observed, calib)
    scores["mlp"] = mlp_scores(model, episodes.observed, episodes.actions, calib)
    table: dict[str, dict[str, float]] = {}
    for name, score in scores.items():
        peak = window_max(score, fault_step, steps)
        row = {}
        for k, case in enumerate(cases):
            faulty = peak[seeds * (k + 1) : seeds * (k + 2)]
            row[case.label] = auroc(faulty, peak[nominal])
        kinds = sorted({c.kind for c in cases})
        for kind in kinds:
            idx = np.concatenate(
                [np.arange(seeds * (k + 1), seeds * (k + 2)) for k, c in enumerate(cases) if c.kind == kind]
            )
            row[f"kind:{kind}"] = auroc(peak[idx], peak[nominal])
        row["all"] = auroc(peak[seeds:], peak[nominal])
        table[name] = row
    delays: dict[str, dict[str, Any]] = {}
    for name, onset in onsets.items():
        pre_alarm = onset[:, calib.stop : fault_step].any(axis=1)
        steps_to = first_onsets(onset, fault_step)[seeds:]
        seconds = steps_to / CONTROL_HZ
        per_case = {}
        for k, case in enumerate(cases):
            d = seconds[seeds * k : seeds * (k + 1)]
            per_case[case.label] = {
                "detected": int(np.isfinite(d).sum()),
                "median_s": _finite(np.median(d)),
            }
        delays[name] = {
            "detected": int(np.isfinite(seconds).sum()),
            "episodes": len(seconds),
            # over every fault episode, a miss counting as infinitely late (None: over half missed)
            "median_delay_s": _finite(np.median(seconds)),
            "median_delay_detected_s": _finite(np.median(seconds[np.isfinite(seconds)]))
            if np.isfinite(seconds).any()
            else None,
            "pre_fault_alarms": int(pre_alarm.sum()),
            "per_case": per_case,
        }
    # false alarms on long nominal runs
    fa_steps = round(fa_hours * 3600 * CONTROL_HZ / fa_runs)
    started = time.perf_counter()
    long_runs = simulate(list(range(5000, 5000 + fa_runs)), fa_steps, [None] * fa_runs, 0.0)
    long_evidence = replay_evidence(model, long_runs.observed, long_runs.actions, horizons, cfg.scaled)
    long_inferred = replay_evidence(model, long_runs.observed, None, horizons, cfg.scaled)
    long_plain = replay_evidence(model, long_runs.observed, long_runs.actions, horizons, plain.scaled)
    fa: dict[str, float] = {}
    armed_from = calib.stop
    hours = fa_runs * (fa_steps - armed_from) / CONTROL_HZ / 3600
    for name, variant, _, scale in runs:
        source = {INFERRED: long_inferred, PLAIN: long_plain}.get(name, long_evidence)
        found = replay_detector(source, variant, model.sensors, model.periods, scale, limits)
        fa[name] = round(float(found.onset[:, armed_from:].sum()) / hours, 3)
    fa_s = time.perf_counter() - started
    return {
        "auroc": table,
        "delays": delays,
        "false_alarms_per_hour": fa,
        "nominal_hours": round(hours, 3),
        "episodes": len(episodes.observed),
        "seeds": seeds,
        "fault_s": fault_s,
        "window_s": WINDOW_S,
        "episode_s": round(sim_s, 1),
        "profile": {"scale": profile.scale, "exponent": profile.exponent},
        "profile_training_std": {"scale": plain_profile.scale, "exponent": plain_profile.exponent},
        "profile_source": profile_source,
        "profile_s": round(profile_s, 1),
        "false_alarm_run_s": round(fa_s, 1),
        "cases": [c.label for c in cases],
    }


def figure(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = result["auroc"]
    cases = result["cases"]
    names = list(table)
    fig, ax = plt.subplots(figsize=(15, 5))
    width = 0.8 / len(names)
    x = np.arange(len(cases) + 1)
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, 20))[: len(names)]
    for j, name in enumerate(names):
        values = [table[name][c] for c in cases] + [table[name]["all"]]
        ax.bar(x + j * width - 0.4 + width / 2, values, width, label=name, color=colours[j])
    ax.axhline(0.95, color="k", lw=0.8, ls="--")
    ax.set_xticks(x, [*cases, "all"], rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0.0, 1.01)
    ax.set_ylabel(f"AUROC (max score in {result['window_s']:.0f} s after the fault vs nominal twin)")
    ax.set_title("Fault detection on the cartpole: what each part of the twin's detector contributes")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="cartpole", help="checkpoint path or registry name")
    parser.add_argument("--assets", type=int, default=10)
    parser.add_argument("--e2e-s", type=float, default=15.0)
    parser.add_argument("--ingest-assets", type=int, default=70)
    parser.add_argument("--ingest-s", type=float, default=15.0)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--fa-hours", type=float, default=1.0)
    parser.add_argument("--fa-runs", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier when shared)")
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument("--skip-detection", action="store_true")
    parser.add_argument(
        "--worker-arg",
        action="append",
        default=[],
        help="an extra `twin worker` option for the live runs (repeatable; e.g. --worker-arg=--threads=2)",
    )
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    adapter = ModelAdapter.load(args.model)
    model_path = str(checkpoint_path(args.model).resolve())
    result: dict[str, Any] = {"model": adapter.name}
    started = time.perf_counter()
    if not args.skip_detection:
        det = detection(adapter, args.seeds, args.fa_hours, args.fa_runs)
        full, name = PROFILED, "twin"
        print(
            f"\nDetection: {det['episodes']} episodes ({det['seeds']} seeds x {len(det['cases'])} faults"
            " + nominal twins), "
            f"fault at {det['fault_s']:.0f} s, window {WINDOW_S:.0f} s; "
            f"false alarms over {det['nominal_hours']} nominal hours"
        )
        header = (
            f"{'detector':<34}"
            + "".join(f"{k:>10}" for k in ("all", "mass", "friction", "actuator", "drift", "stuck"))
            + f"{'delay s':>9}{'FA/h':>7}"
        )
        print(header)
        for variant, row in det["auroc"].items():
            kinds = [
                row.get(f"kind:{k}", float("nan")) for k in ("mass", "friction", "actuator", "drift", "stuck")
            ]
            d = det["delays"].get(variant, {}).get("median_delay_s")
            d = float("inf") if d is None else d
            fa = det["false_alarms_per_hour"].get(variant, float("nan"))
            print(
                f"{variant:<34}{row['all']:>10.3f}"
                + "".join(f"{v:>10.3f}" for v in kinds)
                + f"{d:>9.3f}{fa:>7.2f}"
            )
        print(f"\nreference profile ({det['profile_source']}): {json.dumps(det['profile'])}")
        print(
            "\nper fault (twin):",
            json.dumps(
                {
                    c: (round(det["auroc"][full][c], 3), det["delays"][full]["per_case"][c])
                    for c in det["cases"]
                }
            ),
        )
        figure(det, FIGURE)
        result.update(
            auroc=round(det["auroc"][full]["all"], 4),
            zscore_auroc=round(det["auroc"]["zscore"]["all"], 4),
            mlp_auroc=round(det["auroc"]["mlp"]["all"], 4),
            median_delay_s=det["delays"][full]["median_delay_s"],
            detected=f"{det['delays'][full]['detected']}/{det['delays'][full]['episodes']}",
            false_alarms_per_hour=det["false_alarms_per_hour"][full],
            auroc_per_asset_only=round(det["auroc"][FULL]["all"], 4),
            false_alarms_per_hour_per_asset_only=det["false_alarms_per_hour"][FULL],
            median_delay_s_per_asset_only=det["delays"][FULL]["median_delay_s"],
            profile=det["profile"],
            profile_source=det["profile_source"],
            detection=det,
        )
        del name
    if not args.skip_live:
        live_result = live(
            model_path, args.assets, args.e2e_s, args.ingest_assets, args.ingest_s, tuple(args.worker_arg)
        )
        result.update(live_result)
        print(
            f"\nLive: e2e p50 {live_result['e2e_p50_ms']} ms, p99 {live_result['e2e_p99_ms']} ms "
            f"({live_result['e2e_predictions']} predictions, {args.assets} cartpoles at 30 Hz); "
            f"restart {live_result['restart_s']} s; ingest {live_result['ingest_obs_per_s']} obs/s "
            f"({live_result['ingest_worker_obs']}/{live_result['ingest_offered_obs']} offered, "
            f"{live_result['ingest_predictions_stored']} predictions, "
            f"{live_result['ingest_errors_stored']} errors stored)"
        )
    result["total_s"] = round(time.perf_counter() - started, 1)
    result["load_avg"] = [round(v, 2) for v in os.getloadavg()]
    keys = (
        "e2e_p99_ms",
        "ingest_obs_per_s",
        "auroc",
        "zscore_auroc",
        "mlp_auroc",
        "median_delay_s",
        "false_alarms_per_hour",
        "restart_s",
    )
    details = ("detection", "ingest_worker_stopped", "worker_ready_after_restart")
    summary = {k: result.get(k) for k in keys}
    summary.update({k: v for k, v in result.items() if k not in summary and k not in details})
    if args.skip_live or args.skip_detection:  # a partial run leaves the full run's record alone
        log.warning("partial run: %s and %s left as they are", RESULTS.name, DETAILS.name)
    else:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(summary) + "\n")
        DETAILS.write_text(json.dumps({k: result.get(k) for k in details}, indent=1) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
