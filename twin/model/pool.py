"""Worker processes for the model's side-by-side work: simulating episodes, training baselines.

On 2 cores a second torch thread buys these small networks little (a baseline's training step is
even slower on two threads than on one: ``docs/benchmarks.md``, "Running time"), so independent
jobs go to processes of their own instead. Forked on Linux: a child inherits its inputs (the
training windows) without a pickle, and a spawned child would re-import the caller's main module,
which a script without a main guard cannot survive. torch's thread pool does not survive a fork:
a child that uses torch sets its own thread count before its first op (as PyTorch's DataLoader
workers do). Elsewhere, spawned: the initializer's arguments are pickled.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any


def cores() -> int:
    """CPU cores this process may run on (the container's share, not the host's)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def process_pool(
    workers: int, initializer: Callable[..., None] | None = None, initargs: tuple[Any, ...] = ()
) -> ProcessPoolExecutor:
    """``workers`` processes (forked on Linux, spawned elsewhere); ``initializer(*initargs)`` runs
    in each before its first job, and a forked child receives ``initargs`` without a pickle."""
    if workers < 1:
        raise ValueError(f"process_pool(workers={workers!r}) must be >= 1")
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context(method), initializer=initializer, initargs=initargs
    )
