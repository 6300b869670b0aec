"""Scene registry: names to scene classes, and the one way to build a scene."""

from __future__ import annotations

import importlib
from typing import Any

from sim.scene import SceneConfig
from sim.scenes.base import BaseScene
from sim.world import World

SCENES: dict[str, str] = {
    "cartpole": "sim.scenes.cartpole:CartpoleScene",
    "rotor": "sim.scenes.rotor:RotorScene",
    "urdf": "sim.scenes.urdf:UrdfScene",
    "arm": "sim.scenes.arm:ArmScene",
}
"""Registered scenes: name -> "module:Class" (imported on first use)."""


class UnknownSceneError(ValueError):
    """A scene name that is not registered."""


def register(name: str, target: str) -> None:
    """Add a scene class ("package.module:Class") under ``name``."""
    SCENES[name] = target


def scene_class(name: str) -> type[BaseScene]:
    if name not in SCENES:
        raise UnknownSceneError(f"unknown scene {name!r}; registered scenes: {sorted(SCENES)}")
    module, cls = SCENES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_scene(
    name: str, config: SceneConfig | None = None, world: World | None = None, origin: Any = (0.0, 0.0, 0.0)
) -> BaseScene:
    """A new scene ``name`` (in its own world unless ``world`` is given)."""
    return scene_class(name)(config or SceneConfig(), world=world, origin=origin)
