"""Camera rendering benchmark: TinyRenderer frame time per scene, and the arm's coarse meshes.

    python bench/render.py         # ~20 s; table, then ONE JSON line (bench/results/render.json)

1. Frame time: per scene, the 64x64 ``camera`` frame (``scene.camera()``, as the sim and data
   generation call it) in milliseconds, median of repeats; every scene is rendered in each
   repeat, interleaved, so load on the machine hits all of them alike. The arm is measured
   with pybullet_data's meshes (``meshes="full"``) and with coarse visual meshes
   (``meshes="coarse"``, :mod:`sim.meshes`), in the same pose; ``arm_coarse_frame_speedup`` is
   full over coarse.
2. Camera episodes: the arm's camera data (``twin.model.generate``, one process, tray, 200
   control steps with a frame each), episodes with full meshes against episodes with coarse
   ones, interleaved; ``arm_coarse_generate_speedup`` is the ratio of seconds per episode. The
   physics of both is the same (tested: ``tests/sim/test_meshes.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
import platform
import statistics
import sys
import time

# Run as ``python bench/render.py``, this file's folder comes first on sys.path; drop it so the
# ``sim`` package is not shadowed by ``bench/sim.py``.
_HERE = pathlib.Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if pathlib.Path(p or ".").resolve() != _HERE]

from sim.registry import make_scene  # noqa: E402
from sim.scene import SceneConfig  # noqa: E402
from twin.model.generate import GenerateConfig, generate  # noqa: E402

RESULTS = _HERE / "results" / "render.json"
SCENES = {
    "cartpole": ("cartpole", {}),
    "rotor": ("rotor", {}),
    "arm_full": ("arm", {"cubes": "tray", "meshes": "full"}),
    "arm_coarse": ("arm", {"cubes": "tray", "meshes": "coarse"}),
}


def frame_times(repeats: int, frames: int) -> dict[str, float]:
    """Median ms per frame of each scene in :data:`SCENES`, posed by 30 control steps."""
    scenes = {}
    for name, (kind, options) in SCENES.items():
        scene = make_scene(kind, SceneConfig(seed=1, options=options))
        scene.reset(1)
        for _ in range(30):
            action = scene.control()
            for _ in range(8):
                scene.step(action)
        scene.camera()  # the first frame builds the camera
        scenes[name] = scene
    times: dict[str, list[float]] = {name: [] for name in scenes}
    try:
        for _ in range(repeats):
            for name, scene in scenes.items():
                started = time.perf_counter()
                for _ in range(frames):
                    scene.camera()
                times[name].append((time.perf_counter() - started) / frames * 1e3)
    finally:
        for scene in scenes.values():
            scene.close()
    return {name: round(statistics.median(t), 4) for name, t in times.items()}


def episode_times(repeats: int, episodes: int) -> dict[str, float]:
    """Median seconds per camera episode of the arm, full against coarse meshes (one process)."""
    times: dict[str, list[float]] = {"full": [], "coarse": []}
    for r in range(repeats):
        for meshes, seconds in times.items():
            config = GenerateConfig(
                "arm", episodes, seed=100 + r, camera=True, options={"cubes": "tray", "meshes": meshes}
            )
            started = time.perf_counter()
            generate(config, workers=1)
            seconds.append((time.perf_counter() - started) / episodes)
    return {name: round(statistics.median(t), 4) for name, t in times.items()}


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a rough answer in ~5 s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    frames = frame_times(repeats=3 if args.quick else 7, frames=50 if args.quick else 100)
    episodes = episode_times(repeats=1 if args.quick else 3, episodes=2 if args.quick else 4)
    result = {
        "bench": "render",
        "quick": args.quick,
        "frame_ms": frames,
        "arm_coarse_frame_speedup": round(frames["arm_full"] / frames["arm_coarse"], 3),
        "arm_episode_s": episodes,
        "arm_coarse_generate_speedup": round(episodes["full"] / episodes["coarse"], 3),
        "python": platform.python_version(),
        "total_s": round(time.perf_counter() - started, 1),
    }
    print(f"{'64x64 camera frame':<24}{'ms':>10}")
    for name, ms in frames.items():
        print(f"{name:<24}{ms:>10.3f}")
    print(f"arm: coarse meshes render {result['arm_coarse_frame_speedup']}x faster")
    print(f"{'arm camera episode':<24}{'s':>10}")
    for name, s in episodes.items():
        print(f"{name + ' meshes':<24}{s:>10.3f}")
    print(f"arm camera data: coarse meshes generate {result['arm_coarse_generate_speedup']}x faster")
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
