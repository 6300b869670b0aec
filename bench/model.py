"""World-model benchmark: JEPA vs baselines on held-out episodes, bands, action use, speed.

    .venv/bin/python bench/model.py                 # cartpole, rotor, arm, arm-camera (~35 min)
    .venv/bin/python bench/model.py --quick         # cartpole, small budget (~2-3 min)
    .venv/bin/python bench/model.py --scene rotor   # one scene
    .venv/bin/python bench/model.py --ablation      # cartpole objective ablation (~15-25 min)

Per scene: generate data through the sim, train (or reuse a registered model trained by the
same code on the same data with the same config), evaluate every model on the same held-out
episodes. Prints a table, then ONE JSON line, also merged into bench/results/model.json
(``--quick``: model_quick.json; or ``--results PATH``): the run's scenes and top-level keys
replace the file's, its other scenes and recorded experiments stay. Uses JUMEAU_HOME (default
./var) for checkpoints and the registry database. Progress goes to stderr: a line per preset,
and training bars on a terminal.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

# `python bench/model.py` puts bench/ first on sys.path, where bench/sim.py would shadow the
# `sim` package the data generation imports: drop it (this script imports nothing from bench/).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

from twin.model.generate import default_episodes  # noqa: E402
from twin.model.jepa import ModelConfig  # noqa: E402
from twin.model.memory import keep_freed_memory  # noqa: E402
from twin.model.pipeline import RunConfig  # noqa: E402
from twin.model.presets import scene_model, scene_objective, scene_selection, scene_train  # noqa: E402
from twin.model.train import TrainConfig  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "model.json"
QUICK_RESULTS = RESULTS.with_name("model_quick.json")
MODELS = ("jepa", "jepa_unblended", "persistence", "const_velocity", "linear", "mlp", "gru")
HORIZONS = ("1", "10", "50")


def presets(quick: bool) -> dict[str, dict[str, Any]]:
    """Per scene: episodes to generate and the run config. The JEPA, the MLP and the GRU get the
    same budget (3,000 steps, a 480 s wall-clock guard each), so "no worse than the MLP" is a
    like-for-like comparison; on an idle 2-core machine each model takes 1-4 minutes. Every
    guard anneals the learning rate by time too (``anneal_by_time``), so a run the guard stops
    ends at a low learning rate."""
    if quick:
        train = scene_train(steps=800, eval_every=200, max_seconds=75)
        base = scene_train(steps=600, eval_every=200, max_seconds=20)
        return {"cartpole": {"episodes": 120, "config": RunConfig(train=train, baseline_train=base)}}
    jepa = scene_train()  # what `twin train` trains with (presets.scene_train)
    base = jepa
    camera = scene_train(camera=True, camera_only=("cube",))
    arm_camera = scene_model("arm", camera=True, camera_only=("cube",))
    return {
        "cartpole": {
            "episodes": default_episodes("cartpole"),
            "config": RunConfig(
                model=scene_model("cartpole"),
                objective=scene_objective("cartpole"),
                train=jepa,
                baseline_train=base,
            ),
        },
        "rotor": {
            "episodes": default_episodes("rotor"),
            "config": RunConfig(
                model=scene_model("rotor"),
                objective=scene_objective("rotor"),
                train=jepa,
                baseline_train=base,
            ),
        },
        "arm": {
            "episodes": default_episodes("arm"),
            "config": RunConfig(
                model=scene_model("arm"), objective=scene_objective("arm"), train=jepa, baseline_train=base
            ),
        },
        "arm-camera": {
            "scene": "arm",
            "episodes": default_episodes("arm", camera=True),
            "camera": True,
            "config": RunConfig(
                model=arm_camera,
                objective=scene_objective("arm", camera=True),
                train=camera,
                baseline_train=base,
                neural_baselines=False,
                **scene_selection("arm", arm_camera.camera_only),
            ),
        },
    }


def train_or_reuse(name: str, preset: dict[str, Any], seed: int) -> tuple[Path, dict[str, Any], Any | None]:
    """(checkpoint path, metrics, the data it trained on) for one preset; a reused model's data
    is None (not generated here)."""
    from sqlalchemy.orm import Session

    from twin.model.generate import GenerateConfig, generate
    from twin.model.jobs import _engine, code_version, train_job
    from twin.model.registry import find_matching
    from twin.settings import home

    scene, config = preset.get("scene", name), preset["config"]
    gen = GenerateConfig(scene, preset["episodes"], seed=seed, camera=preset.get("camera", False))
    lineage = {**gen.lineage(), "code": code_version()}
    engine = _engine(None)
    with Session(engine) as session:
        row = find_matching(session, scene, {**config.to_dict(), "seed": seed}, lineage)
        if row is not None:
            return Path(row.path), row.metrics, None
    note = f"-- {name}: generating {gen.episodes} episodes, then training (seed {seed})"
    print(note, file=sys.stderr, flush=True)
    started = time.perf_counter()
    data = generate(gen)
    generate_s = time.perf_counter() - started
    outcome = train_job(  # progress bars (JEPA, MLP, GRU) where stderr is a terminal
        data, config, seed, f"bench-{name}", home() / "models", engine=engine, progress=sys.stderr.isatty()
    )
    metrics = dict(outcome.checkpoint.metrics)
    metrics["generate_s"] = round(generate_s, 1)
    return outcome.path, metrics, data


def camera_probe_r2(path: Path, horizon: int = 10, data: Any | None = None) -> dict[str, float]:
    """R^2 of the cubes' x and y read from predicted latents ``horizon`` steps ahead (test
    episodes), the mean over the six coordinates: ``all`` samples, and ``in_view`` those where
    the cube is inside the camera's field (a cube pushed off the table is out of every frame;
    ``in_view_share``). z is left out: cubes rest on the table, so its variance is ~0. ``data``:
    the episodes the model trained on, where the caller has them (else regenerated from the
    checkpoint's lineage: 300 camera episodes, ~1.5 minutes)."""
    import numpy as np

    from sim.camera import CameraConfig
    from sim.scenes.arm import CAMERA_CENTRE, CAMERA_HEIGHT_M
    from twin.model.checkpoint import load_checkpoint
    from twin.model.evaluate import predict_with_scale
    from twin.model.jobs import held_out
    from twin.model.pipeline import sensor_indices
    from twin.model.presets import SCENE_CAMERA_SELECT_ON

    checkpoint = load_checkpoint(path)
    prepared = held_out(checkpoint, data)  # its own split: the seed it was trained with
    names = [s.name for s in checkpoint.schema.sensors]
    cubes = sensor_indices(SCENE_CAMERA_SELECT_ON["arm"], names, "camera probe")  # x, y of each cube
    predicted, _ = predict_with_scale(checkpoint.model, checkpoint.features, prepared.test, horizon)
    observed = prepared.test.obs[:, checkpoint.model.history + horizon - 1][:, cubes]
    predicted = predicted[:, horizon - 1][:, cubes]
    half = CAMERA_HEIGHT_M * math.tan(math.radians(CameraConfig().fov_deg / 2))  # half the field at the table
    x, y = observed[:, 0::2], observed[:, 1::2]
    seen = (np.abs(x - CAMERA_CENTRE[0]) < half) & (np.abs(y - CAMERA_CENTRE[1]) < half)
    seen = np.repeat(seen, 2, axis=1)

    def r2(rows: np.ndarray) -> float:
        out = []
        for k in range(observed.shape[1]):
            o, p = observed[rows[:, k], k], predicted[rows[:, k], k]
            out.append(1 - ((p - o) ** 2).sum() / max(((o - o.mean()) ** 2).sum(), 1e-12))
        return round(float(np.mean(out)), 4)

    return {
        "all": r2(np.ones_like(seen)),
        "in_view": r2(seen),
        "in_view_share": round(float(seen.mean()), 4),
    }


def rotor_hours(seed: int) -> dict[str, Any]:
    """Hours-ahead bearing temperature (``twin.model.slow``): fit on a 6 h rotor run with bearing
    wear, forecast a second 8 h run (other seed) from hour 2 to its end."""
    from twin.model.pool import side_by_side
    from twin.model.slow import evaluate_hours, simulate_run

    started = time.perf_counter()
    runs = side_by_side(  # the two runs (0.65 and 0.86 M PyBullet steps) side by side
        {
            "train run": (simulate_run, (6.0, seed * 1000 + 1, WEAR_PER_HOUR)),
            "test run": (simulate_run, (8.0, seed * 1000 + 2, WEAR_PER_HOUR)),
        },
        2,
    )
    train, test = runs["train run"], runs["test run"]
    out = evaluate_hours(train, test, 2.0, (1.0, 3.0, 6.0), LIMIT_K)
    out.update(
        {"wear_per_hour": WEAR_PER_HOUR, "train_hours": 6.0, "forecast_from_h": 2.0, "test_hours": 8.0}
    )
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


WEAR_PER_HOUR = 0.3
LIMIT_K = 330.0


def scene_record(metrics: dict[str, Any]) -> dict[str, Any]:
    nrmse = {m: {h: metrics["nrmse"][m][h] for h in HORIZONS} for m in MODELS if m in metrics["nrmse"]}
    return {
        "nrmse": nrmse,
        "coverage90": metrics["coverage90"],
        "shuffled_action_ratio_h10": metrics["shuffled_action_ratio_h10"],
        "train_s": metrics["train"]["train_s"],
        "baseline_train_s": metrics["train"]["baseline_train_s"],
        "generate_s": metrics.get("generate_s"),
        "stages_s": metrics["train"].get("stages_s"),  # where training's wall time went (pipeline.run)
        "latent_effective_rank": round(metrics["latent"]["effective_rank"], 2),
        "latent_std_min": round(metrics["latent"]["std_min"], 4),
        "best_of_models": best_of_models(metrics["nrmse_per_sensor"]),
    }


def best_of_models(per_sensor: dict[str, dict[str, dict[str, float]]]) -> dict[str, float]:
    """Per horizon, the mean over sensors of the lowest NRMSE any model reached on each sensor
    (the JEPA, blended or not, and every baseline): what picking the best of them sensor by
    sensor, knowing the test answers, would score. A JEPA target below it is beyond every model
    measured (docs/model.md, "Where the arm's floor lies")."""
    models = [m for m in MODELS if m in per_sensor]
    sensors = list(per_sensor[models[0]])
    return {
        h: round(sum(min(per_sensor[m][s][h] for m in models) for s in sensors) / len(sensors), 5)
        for h in HORIZONS
    }


def targets(record: dict[str, Any]) -> dict[str, bool]:
    n = record["nrmse"]
    out = {}
    for h in ("10", "50"):
        best = min(n[m][h] for m in ("persistence", "const_velocity", "linear"))
        out[f"h{h}<=0.5x_best_simple"] = n["jepa"][h] <= 0.5 * best
        if "mlp" in n:
            out[f"h{h}<=mlp"] = n["jepa"][h] <= n["mlp"][h]
    out["coverage_85_95"] = all(0.85 <= c <= 0.95 for c in record["coverage90"].values())
    out["shuffled_x2"] = record["shuffled_action_ratio_h10"] >= 2.0
    return out


def print_table(name: str, record: dict[str, Any]) -> None:
    print(f"\n== {name} (train {record['train_s']} s)")
    print(f"{'model':16s}" + "".join(f"{'h=' + h:>10s}" for h in HORIZONS))
    for model, row in record["nrmse"].items():
        print(f"{model:16s}" + "".join(f"{row[h]:10.4f}" for h in HORIZONS))
    print(
        f"coverage90 {record['coverage90']}  shuffled-action ratio h10 {record['shuffled_action_ratio_h10']}"
    )
    best = record["best_of_models"]
    print("best of the models, sensor by sensor: " + "  ".join(f"h={h} {best[h]:.4f}" for h in HORIZONS))
    if "hours_ahead" in record:
        print("hours ahead (bearing temperature, K):", json.dumps(record["hours_ahead"]))
    print("targets:", record["targets"])


ABLATION = {
    "full": {},
    "pure_jepa_detached_probe": {"objective": {"readout_through": False}},
    "no_sensor_rollout_term": {"objective": {"sensor_weight": 0.0}},
    "no_latent_loss": {"objective": {"latent_weight": 0.0}},
    "no_vicreg": {"objective": {"var_weight": 0.0, "cov_weight": 0.0}},
    "vicreg_weight_1": {"objective": {"var_weight": 1.0, "cov_weight": 0.04}},
    "no_ema": {"objective": {"ema_tau": 0.0}},
    "no_inverse_dynamics": {"objective": {"inverse_weight": 0.0}},
    "concat_actions_no_film": {"model": {"conditioning": "concat"}},
    "history_1": {"model": {"history": 1}},
    "history_4": {"model": {"history": 4}},
    "no_carried_observation": {"model": {"carry_observation": False}},
    "no_one_step_term": {"objective": {"one_step_weight": 0.0}},
    "rollout_8": {"objective": {"rollout_steps": 8}},
    "linear_path": {"model": {"linear_path": True}},
    "huber_sensor_loss": {"objective": {"sensor_loss": "huber"}},
}
"""Variants of the cartpole model: each switches one part of the objective or model off (the
last two switch an option on)."""


def ablation(
    seeds: list[int], steps: int, episodes: int, variants: list[str] | None = None
) -> dict[str, Any]:
    """Train every :data:`ABLATION` variant on the same cartpole data, for each seed (its own
    data, split, initialisation and batches); JEPA test NRMSE each, and per variant the mean
    and spread over the seeds (``variants``; one seed's differences of a few percent are noise)."""
    import dataclasses

    from twin.model.baselines import NeuralForecaster
    from twin.model.calibration import calibrate
    from twin.model.evaluate import band_errors, diagnostics, score
    from twin.model.generate import GenerateConfig, generate
    from twin.model.losses import ObjectiveConfig
    from twin.model.pipeline import prepare, train_jepa

    path = RESULTS.with_name("model_ablation.json")
    defaults = {"model": ModelConfig().to_dict(), "objective": ObjectiveConfig().to_dict()}
    out: dict[str, Any] = {
        "steps": steps,
        "episodes": episodes,
        "defaults": defaults,
        "seeds": seeds,
        "runs": {},
        "variants": {},
    }
    earlier = json.loads(path.read_text()) if path.exists() else {}
    same = (earlier.get("steps"), earlier.get("episodes"), earlier.get("defaults")) == (
        steps,
        episodes,
        json.loads(json.dumps(defaults)),
    )
    if same and "runs" in earlier:
        # the same ablation: keep the other seeds' runs (and, for a subset, the other variants)
        out["runs"] = {k: v for k, v in earlier["runs"].items() if variants or int(k) not in seeds}
        out["seeds"] = sorted({*map(int, out["runs"]), *seeds})
    for seed in seeds:
        data = generate(GenerateConfig("cartpole", episodes, seed=seed))
        sensors = [s.name for s in data.schema.sensors]
        runs = out["runs"].setdefault(str(seed), {})
        for name, change in ABLATION.items():
            if variants and name not in variants:
                continue
            base = RunConfig(train=TrainConfig(steps=steps, eval_every=250, max_seconds=600, seed=seed))
            config = dataclasses.replace(
                base,
                model=dataclasses.replace(ModelConfig(), **change.get("model", {})),
                objective=dataclasses.replace(ObjectiveConfig(), **change.get("objective", {})),
            )
            prepared = prepare(data, config, seed)
            model, result = train_jepa(prepared, config, seed)
            f = prepared.features
            metrics = score({"jepa": NeuralForecaster(model, f, model.history)}, prepared.test, f, sensors)
            bands = calibrate(*band_errors(model, f, prepared.calib, 50))
            extra = diagnostics(model, f, prepared.test, bands, seed)
            runs[name] = {
                "nrmse": metrics["nrmse"]["jepa"],
                "coverage90": extra["coverage90"],
                "shuffled_action_ratio_h10": extra["shuffled_action_ratio_h10"],
                "effective_rank": round(extra["latent"]["effective_rank"], 2),
                "latent_std_min": round(extra["latent"]["std_min"], 4),
                "train_s": round(result.seconds, 1),
            }
            out["variants"] = {
                v: _over_seeds([r[v] for r in out["runs"].values() if v in r])
                for v in ABLATION
                if any(v in r for r in out["runs"].values())
            }
            path.write_text(json.dumps(out, indent=1) + "\n")  # after every variant
            row = runs[name]
            print(
                f"seed {seed} {name:28s} "
                + " ".join(f"{row['nrmse'][h]:.4f}" for h in HORIZONS)
                + f"  rank {row['effective_rank']:5.2f}  shuffled x{row['shuffled_action_ratio_h10']}"
                + f"  {row['train_s']} s",
                flush=True,
            )
    print("\nmean over seeds (spread: std)")
    for name, row in out["variants"].items():
        print(
            f"{name:28s} "
            + " ".join(f"{row['nrmse'][h]:.4f}±{row['nrmse_std'][h]:.4f}" for h in HORIZONS)
            + f"  shuffled x{row['shuffled_action_ratio_h10']}  ({row['n_seeds']} seeds)"
        )
    return out


def _over_seeds(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One variant's runs (one per seed) -> their means (``nrmse_std``: the spread of NRMSE)."""
    import numpy as np

    def mean(values: list[float]) -> float:
        return round(float(np.mean(values)), 5)

    return {
        "nrmse": {h: mean([r["nrmse"][h] for r in rows]) for h in rows[0]["nrmse"]},
        "nrmse_std": {h: round(float(np.std([r["nrmse"][h] for r in rows])), 5) for h in rows[0]["nrmse"]},
        "coverage90": {h: mean([r["coverage90"][h] for r in rows]) for h in rows[0]["coverage90"]},
        "shuffled_action_ratio_h10": mean([r["shuffled_action_ratio_h10"] for r in rows]),
        "effective_rank": mean([r["effective_rank"] for r in rows]),
        "latent_std_min": mean([r["latent_std_min"] for r in rows]),
        "train_s": mean([r["train_s"] for r in rows]),
        "n_seeds": len(rows),
    }


def run_scene(name: str, preset: dict[str, Any], quick: bool, seed: int) -> tuple[Path, dict[str, Any]]:
    """Train (or reuse) and score one preset: (checkpoint path, its record)."""
    started = time.perf_counter()
    path, metrics, data = train_or_reuse(name, preset, seed)
    reused = data is None
    record = scene_record(metrics)
    record["reused"] = reused
    record["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if name == "arm-camera":
        probe = camera_probe_r2(path, data=data)
        record["camera_probe_r2_h10"] = probe["all"]
        record["camera_probe_r2_h10_in_view"] = probe["in_view"]
        record["camera_probe_in_view_share"] = probe["in_view_share"]
    if name == "rotor" and not quick:
        record["hours_ahead"] = rotor_hours(seed)
    record["targets"] = targets(record)
    record["preset_s"] = round(time.perf_counter() - started, 1)  # generation to the last figure
    return path, record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", action="append", help="cartpole, rotor, arm, arm-camera (repeatable)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ablation", action="store_true", help="Cartpole objective ablation instead.")
    parser.add_argument("--ablation-steps", type=int, default=1000)
    parser.add_argument("--ablation-seeds", type=int, default=3, help="Seeds of the ablation (from --seed).")
    parser.add_argument("--variant", action="append", help="Ablation variants to (re)run (default all).")
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads (1 on a machine busy with other jobs)"
    )
    parser.add_argument(
        "--results",
        type=Path,
        help=f"JSON the run is merged into (default {RESULTS}; with --quick, {QUICK_RESULTS.name} "
        "beside it; --ablation writes model_ablation.json)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as pipeline.run does; reused models skip it, their probe and timings not
    if args.ablation:
        seeds = list(range(args.seed, args.seed + args.ablation_seeds))
        result = ablation(seeds, args.ablation_steps, 300, args.variant)
        path = RESULTS.with_name("model_ablation.json")
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result))
        return
    started = time.perf_counter()
    table = presets(args.quick)
    names = list(dict.fromkeys(args.scene or table))  # each preset once, in the order given
    unknown = [n for n in names if n not in table]
    if unknown:
        parser.error(f"unknown preset(s) {unknown}: choose from {list(table)}")
    scenes: dict[str, Any] = {}
    paths: dict[str, Path] = {}
    for name in names:
        paths[name], scenes[name] = run_scene(name, table[name], args.quick, args.seed)
        print_table(name, scenes[name])
    if "arm-camera" in scenes and "arm" in scenes:
        for key, value in scenes["arm-camera"].items():
            if key.startswith("camera_probe"):
                scenes["arm"][key] = value
    from twin.model.api import TwinModel
    from twin.model.speed import model_timings, timings

    first = "cartpole" if "cartpole" in paths else next(iter(paths))
    speed = timings(TwinModel.load(paths[first]), table[first].get("scene", first))
    for name, path in paths.items():  # a camera model's step: a live stream's, and reading every frame
        if table[name].get("camera"):
            stepped = speed if name == first else model_timings(TwinModel.load(path))
            scenes[name].update(step_ms=stepped["step_ms"], step_cold_ms=stepped["step_cold_ms"])
            print(
                f"{name}: one encode+predict step {stepped['step_ms']} ms streaming, "
                f"{stepped['step_cold_ms']} ms reading every frame of its window"
            )
    # the live worker steps each asset on WorkerConfig.torch_threads (1 by default): the step there
    torch.set_num_threads(1)
    try:
        for name, path in paths.items():
            if name == first or table[name].get("camera"):
                one = model_timings(TwinModel.load(path), candidates=10, steps=2)["step_ms"]
                scenes[name]["step_1_thread_ms"] = one
                print(f"{name}: one encode+predict step {one} ms on one thread (the live worker's default)")
    finally:
        torch.set_num_threads(args.threads)
    result = {
        "bench": "model",
        "quick": args.quick,
        "scenes": scenes,
        "rollout_1000x30_ms": speed["rollout_ms"],
        "rollout_read_1000x30_ms": speed["rollout_read_ms"],
        "sim_rollout_1000x30_ms": speed["sim_rollout_ms"],
        "rollout_speedup": speed["speedup"],
        "step_ms": speed["step_ms"],
        "timing_scene": first,
        "threads": args.threads,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "total_s": round(time.perf_counter() - started, 1),
    }
    print(
        f"\nrollout 1000x30: model {speed['rollout_ms']} ms, PyBullet {speed['sim_rollout_ms']} ms "
        f"({speed['speedup']}x); one encode+predict step {speed['step_ms']} ms"
    )
    merge_results(args.results or (QUICK_RESULTS if args.quick else RESULTS), result)
    print(json.dumps(result))


def merge_results(path: Path, result: dict[str, Any]) -> None:
    """Write ``result`` into the JSON at ``path``: its top-level keys and its scenes replace
    those of the file, and everything else the file holds stays (the other scenes, each with
    its own ``measured_at``, and the recorded experiments), so a run of one scene does not
    wipe the others' figures."""
    earlier = json.loads(path.read_text()) if path.exists() else {}
    merged = {**earlier, **result, "scenes": {**earlier.get("scenes", {}), **result["scenes"]}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merged, indent=1) + "\n")


if __name__ == "__main__":
    main()
