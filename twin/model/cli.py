"""``twin train`` and ``twin eval``: thin typer commands over :mod:`twin.model.jobs`.

Heavy imports happen inside the commands, so ``twin --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

HORIZON_COLUMNS = ("1", "10", "50")


def _print_table(metrics: dict[str, Any], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("model")
    for h in HORIZON_COLUMNS:
        table.add_column(f"NRMSE h={h}", justify="right")
    for name, row in metrics["nrmse"].items():
        table.add_row(name, *(f"{row[h]:.4f}" for h in HORIZON_COLUMNS))
    console = Console()
    console.print(table)
    coverage = " ".join(f"h{h}={v:.3f}" for h, v in metrics["coverage90"].items())
    latent = metrics["latent"]
    console.print(
        f"90% band coverage: {coverage}; shuffled-action error ratio (h10): "
        f"{metrics['shuffled_action_ratio_h10']:.2f}; latent: mean std {latent['std_mean']:.3f}, "
        f"min std {latent['std_min']:.3f}, effective rank {latent['effective_rank']:.1f}/{latent['dim']}"
    )


def train_command(
    scene: Annotated[str, typer.Option(help="Simulator scene (cartpole, rotor, arm, ...).")] = "cartpole",
    episodes: Annotated[
        str | None,
        typer.Option(help="Train on recorded episodes: 'all' (of the scene), an asset name, or ids '3,4,9'."),
    ] = None,
    generate: Annotated[
        int, typer.Option(help="Generate N episodes through the sim (0: scene default).")
    ] = 0,
    camera: Annotated[bool, typer.Option("--camera", help="Also encode 64x64 camera frames.")] = False,
    camera_only: Annotated[bool, typer.Option("--camera-only", help="Encode only camera frames.")] = False,
    from_camera: Annotated[
        list[str] | None,
        typer.Option(
            "--from-camera",
            metavar="PREFIX",
            help="Learn the sensors whose names start with PREFIX only from camera frames, the others "
            "from their sensors (repeatable; implies --camera), e.g. the arm's cubes: --from-camera cube.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of data, split, init and batches.")] = 0,
    steps: Annotated[int, typer.Option(help="Maximum training steps.")] = 3000,
    max_minutes: Annotated[float, typer.Option(help="Wall-clock guard for the JEPA training.")] = 8.0,
    name: Annotated[str | None, typer.Option(help="Registry name (default: the scene).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Train a world model (JEPA + baselines), calibrate its bands, save and register it."""
    import torch

    from sim.registry import UnknownSceneError, scene_class
    from twin.logs import setup_logging
    from twin.model.generate import default_episodes
    from twin.model.jobs import DataSpec, load_data, train_job
    from twin.model.pipeline import RunConfig
    from twin.model.presets import scene_model, scene_objective, scene_selection, scene_train
    from twin.settings import home

    setup_logging(verbose)
    torch.set_num_threads(2)
    if episodes is not None and generate:
        raise typer.BadParameter("give --episodes or --generate, not both")
    try:
        scene_class(scene)
    except UnknownSceneError as exc:
        raise typer.BadParameter(str(exc)) from None
    if generate < 0:
        raise typer.BadParameter(f"--generate {generate}: a number of episodes >= 0 (0: the scene's default)")
    if steps < 1:
        raise typer.BadParameter(f"--steps {steps}: at least 1 training step")
    if not max_minutes > 0:
        raise typer.BadParameter(f"--max-minutes {max_minutes}: a wall-clock guard above 0 minutes")
    if seed < 0:
        raise typer.BadParameter(f"--seed {seed}: a seed >= 0")
    hidden = tuple(from_camera or ())
    if hidden and camera_only:
        raise typer.BadParameter(
            "--camera-only already learns every sensor from the camera: drop --from-camera"
        )
    camera = camera or camera_only or bool(hidden)  # frames are encoded
    ids: tuple[int, ...] = ()
    asset = None
    if episodes is not None and episodes != "all":
        if all(part.strip().isdigit() for part in episodes.split(",")):
            ids = tuple(int(part) for part in episodes.split(","))
        else:
            asset = episodes
    spec = DataSpec(
        scene,
        generate=0 if episodes is not None else (generate or default_episodes(scene, camera)),
        from_db=episodes is not None,
        episode_ids=ids,
        asset=asset,
        camera=camera,
        seed=seed,
    )
    try:
        data = load_data(spec)
    except LookupError as exc:
        typer.echo(f"twin train: {exc}", err=True)
        raise typer.Exit(2) from None
    names = [s.name for s in data.schema.sensors]
    unknown = [p for p in hidden if not any(n.startswith(p) for n in names)]
    if unknown:
        typer.echo(f"twin train: --from-camera {unknown}: no sensor of {scene} starts with it", err=True)
        raise typer.Exit(2)
    model = scene_model(
        scene,
        camera=camera,
        sensors=not camera_only,
        carry_observation=not camera_only,
        **({"camera_only": hidden} if hidden else {}),
    )
    train = scene_train(model.camera, hidden, steps=steps, seed=seed, max_seconds=max_minutes * 60)
    objective = scene_objective(scene, camera=model.camera)
    config = RunConfig(model=model, objective=objective, train=train, **scene_selection(scene, hidden))
    outcome = train_job(
        data,
        config,
        seed,
        name or scene + ("-camera" if model.camera else ""),
        home() / "models",
        progress=True,
    )
    checkpoint = outcome.checkpoint
    _print_table(checkpoint.metrics, f"{checkpoint.name}:{checkpoint.version} held-out test episodes")
    typer.echo(f"checkpoint {outcome.path} (registry id {outcome.registry_id})")


def eval_command(
    model: Annotated[str, typer.Argument(help="Checkpoint path, registry name or name:version.")],
    plot: Annotated[Path | None, typer.Option(help="PNG of predicted vs observed futures.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as one JSON line.")] = False,
) -> None:
    """Evaluate a model and its baselines on its held-out episodes; save a PNG plot."""
    import torch

    from twin.logs import setup_logging
    from twin.model.checkpoint import CheckpointError, SchemaMismatch
    from twin.model.jobs import eval_job
    from twin.settings import home

    setup_logging()
    torch.set_num_threads(2)
    target = plot or home() / "reports" / f"{Path(model).stem.replace(':', '-')}-futures.png"
    try:
        metrics = eval_job(model, target)
    except (LookupError, CheckpointError, SchemaMismatch) as exc:
        typer.echo(f"twin eval: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps({k: v for k, v in metrics.items() if k != "nrmse_per_sensor"}))
    else:
        _print_table(metrics, f"{model}: held-out test episodes")
        typer.echo(f"plot: {metrics['plot']}")
