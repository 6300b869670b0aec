"""Side-by-side work in processes of its own: simulating episodes, training the baselines.

On 2 cores a second torch thread buys these small networks little, and the sensor-space
baselines' steps nothing (``docs/benchmarks.md``, "Running time"), so independent jobs run in
processes of their own instead, a core each. :func:`side_by_side` runs named jobs and returns
their results by name; a job that raises, or whose process dies, stops the others at once and
is raised in the caller naming it.

Forked on Linux: a child inherits its arguments (training windows, episode plans) without a
pickle, and a spawned child would re-import the caller's main module, which a script without a
main guard cannot survive. torch's thread pool does not survive a fork, so a child that uses
torch sets its own thread count before its first op (as PyTorch's DataLoader workers do).
Elsewhere, spawned: the arguments are pickled. Results come back pickled through a pipe, so a
job returns plain values (numpy arrays, not tensors, which torch would send through shared
memory that a finished child may release).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection, wait
from typing import Any

log = logging.getLogger(__name__)

Job = tuple[Callable[..., Any], tuple[Any, ...]]
"""A function and its arguments (picklable where processes are spawned)."""


def cores() -> int:
    """CPU cores this process may run on (the container's share, not the host's)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def _context() -> Any:
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")


def _run(conn: Connection, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """In the child: ``function(*args)``, its result or its error sent back on ``conn``."""
    try:
        reply: tuple[str, Any] = ("ok", function(*args))
    except BaseException as exc:  # everything goes back to the caller, named
        reply = ("error", (f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    try:
        conn.send(reply)
    finally:
        conn.close()


def side_by_side(jobs: Mapping[str, Job], workers: int) -> dict[str, Any]:
    """Run each job ``name: (function, args)`` in a process of its own, at most ``workers`` at
    a time, in the order given; their results by name. A job that raises, or whose process dies
    (killed, out of memory), ends the others' processes and raises RuntimeError naming it (with
    the child's traceback in the log)."""
    if workers < 1:
        raise ValueError(f"side_by_side(workers={workers!r}) must be >= 1")
    context = _context()
    pending = list(jobs.items())
    running: dict[str, tuple[Any, Connection]] = {}
    results: dict[str, Any] = {}
    try:
        while pending or running:
            while pending and len(running) < workers:
                name, (function, args) = pending.pop(0)
                here, there = context.Pipe(duplex=False)
                process = context.Process(target=_run, args=(there, function, args), name=f"jumeau-{name}")
                process.start()
                there.close()  # the child's end: its exit, or its reply, wakes the wait below
                running[name] = (process, here)
            ready = wait([conn for _, conn in running.values()])
            for name, (process, conn) in list(running.items()):
                if conn not in ready:
                    continue
                try:
                    status, payload = conn.recv()
                except EOFError:
                    process.join()
                    del running[name]
                    raise RuntimeError(
                        f"{name}: its process died (exit code {process.exitcode}; killed, or out of memory?)"
                    ) from None
                process.join()
                conn.close()
                del running[name]
                if status == "error":
                    message, trace = payload
                    log.error("%s failed in its process:\n%s", name, trace)
                    raise RuntimeError(f"{name}: failed in its process: {message}")
                results[name] = payload
    finally:
        for process, conn in running.values():  # after a failure: the others are stopped
            process.terminate()
            process.join()
            conn.close()
    return results
