"""How the real-time loop asks the OS to wake it on time.

Two levels, both undone when the run ends:

* :func:`latency_hints` (no privilege needed, the default for ``--realtime``): a short EEVDF
  slice for this thread (``sched_setattr`` with ``sched_runtime`` on SCHED_OTHER, Linux >= 6.12:
  a task with a shorter slice gets an earlier virtual deadline, so when its timer fires it
  preempts a CPU-bound task of the same nice level instead of waiting out that task's slice,
  ~1.4 ms by default here) and a 1 us timer slack (``PR_SET_TIMERSLACK``; the default 50 us
  lets the kernel wake a sleeper late to batch timers). It changes no share of the CPU: a loop
  that needs more than its fair share still waits. Where unsupported it is logged and skipped.
* :func:`raise_priority`: SCHED_FIFO at a priority (needs CAP_SYS_NICE; refused: logged and
  the run goes on under the normal scheduler).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import platform
import struct
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

_SYS_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}
_SYS_SCHED_GETATTR = {"x86_64": 315, "aarch64": 275}
_SCHED_ATTR = struct.Struct("IIQiIQQQII")  # struct sched_attr, SCHED_ATTR_SIZE_VER1 (56 bytes)
_PR_SET_TIMERSLACK, _PR_GET_TIMERSLACK = 29, 30


def _libc() -> ctypes.CDLL | None:
    if not hasattr(os, "sched_setscheduler"):  # not Linux
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _get_sched_attr(libc: ctypes.CDLL, number: int) -> tuple[int, ...]:
    buffer = ctypes.create_string_buffer(_SCHED_ATTR.size)
    if libc.syscall(number, 0, buffer, _SCHED_ATTR.size, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))
    return _SCHED_ATTR.unpack(buffer.raw)


def _set_sched_attr(libc: ctypes.CDLL, number: int, attr: tuple[int, ...]) -> None:
    if libc.syscall(number, 0, ctypes.c_char_p(_SCHED_ATTR.pack(*attr)), 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def _short_slice(libc: ctypes.CDLL, slice_us: int) -> Callable[[], None] | None:
    """Ask for an EEVDF slice of ``slice_us``; the undo, or None where not possible."""
    machine = platform.machine()
    if machine not in _SYS_SCHED_SETATTR:
        log.info("scheduler slice hint skipped: no sched_setattr number for %s", machine)
        return None
    get_nr, set_nr = _SYS_SCHED_GETATTR[machine], _SYS_SCHED_SETATTR[machine]
    try:
        previous = _get_sched_attr(libc, get_nr)
        if previous[1] != 0:  # not SCHED_OTHER (e.g. already SCHED_FIFO): leave it
            return None
        _set_sched_attr(libc, set_nr, (_SCHED_ATTR.size, 0, 0, previous[3], 0, slice_us * 1000, 0, 0, 0, 0))
        granted = _get_sched_attr(libc, get_nr)[5]
    except OSError as exc:
        log.info("scheduler slice hint of %d us refused (%s): kernel default slice", slice_us, exc)
        return None
    log.info("real-time loop: scheduler slice %.0f us (was %.0f us)", granted / 1e3, previous[5] / 1e3)

    def undo() -> None:
        with contextlib.suppress(OSError):
            _set_sched_attr(libc, set_nr, (_SCHED_ATTR.size, 0, 0, previous[3], 0, 0, 0, 0, 0, 0))

    return undo


@contextlib.contextmanager
def latency_hints(slice_us: int, timer_slack_ns: int = 1000) -> Iterator[None]:
    """While inside: this thread asks for a ``slice_us`` scheduler slice (0: leave it) and a
    ``timer_slack_ns`` timer slack. Unprivileged; silently partial where unsupported."""
    libc = _libc()
    undo: list[Callable[[], None]] = []
    if libc is not None:
        if slice_us > 0 and (restore_slice := _short_slice(libc, slice_us)) is not None:
            undo.append(restore_slice)
        previous_slack = libc.prctl(_PR_GET_TIMERSLACK, 0, 0, 0, 0)
        if previous_slack > 0 and libc.prctl(_PR_SET_TIMERSLACK, timer_slack_ns, 0, 0, 0) == 0:
            undo.append(lambda: libc.prctl(_PR_SET_TIMERSLACK, previous_slack, 0, 0, 0))
    try:
        yield
    finally:
        for step in reversed(undo):
            step()


def raise_priority(priority: int) -> tuple[int, int] | None:
    """Switch this process to SCHED_FIFO at ``priority``; the previous (policy, priority), or
    None when the OS refuses (logged once)."""
    if not hasattr(os, "sched_setscheduler"):
        log.warning("rt_priority=%d ignored: no sched_setscheduler on this platform", priority)
        return None
    previous = (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority)
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as exc:
        log.warning("rt_priority=%d refused (%s): running on the normal scheduler", priority, exc)
        return None
    log.info("real-time loop on SCHED_FIFO priority %d", priority)
    return previous


def restore_priority(previous: tuple[int, int]) -> None:
    policy, priority = previous
    try:
        os.sched_setscheduler(0, policy, os.sched_param(priority))
    except OSError as exc:
        log.warning("could not restore the scheduler policy: %s", exc)
