"""Keep freed tensor memory in the process for the next training step instead of returning it.

glibc's malloc serves a block above its mmap threshold with a fresh ``mmap`` and hands it back
with ``munmap`` when freed; the threshold starts at 128 KiB and rises, one freed block at a
time, to at most 32 MiB, and the heap's free top is trimmed back to the kernel above twice
that. A training step of the world model allocates and frees dozens of tensors of 1-25 MB (the
arm camera's keypoint maps, 300-400 frames x 16 maps x 32 x 32 floats, are 25 MB each), so by
default every step faults in fresh zero-filled pages for them. With these settings the camera
preset's step took 15-32% less time (2 cores, seven pairs of fresh interpreters, e.g. 285 -> 193
ms); the sensor presets' steps moved within the machine's noise (docs/benchmarks.md, "Running
time").

:func:`keep_freed_memory` sets the threshold to its ceiling and the trim threshold above what a
step frees, so the blocks stay in the heap and are reused. The cost: the process keeps up to
``trim_bytes`` of freed memory mapped between steps. It is called where training and
evaluation start (``pipeline.run``, ``jobs.eval_job``) and by ``bench/model.py``, never at
import: it changes the allocator of the whole process. Elsewhere than glibc (macOS, Windows,
musl) it does nothing. PyTorch's own CPU caching allocator is not an option: it is for pinned
host memory only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

__all__ = ["MMAP_THRESHOLD_MAX", "keep_freed_memory"]

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
"""``mallopt`` parameters (glibc's ``malloc.h``)."""

MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
"""glibc's ceiling for ``M_MMAP_THRESHOLD`` on 64-bit systems: blocks up to it come from the heap."""

_state: dict[str, dict[str, int]] = {}
"""``"applied"``: the settings :func:`keep_freed_memory` applied in this process."""


def keep_freed_memory(trim_bytes: int = 1 << 30, top_pad_bytes: int = 64 << 20) -> dict[str, int] | None:
    """Serve blocks up to 32 MiB from the heap and keep up to ``trim_bytes`` of freed heap in the
    process (``top_pad_bytes``: extra the heap grows by at a time). Returns the settings applied,
    or None where the C library is not glibc (nothing changed). The first call's settings hold
    for the process: a later call returns (a copy of) them, and warns if it asked for others."""
    if trim_bytes < 2 * MMAP_THRESHOLD_MAX or top_pad_bytes < 0:
        raise ValueError(
            f"keep_freed_memory(trim_bytes={trim_bytes}, top_pad_bytes={top_pad_bytes}): trim_bytes "
            f"must be at least {2 * MMAP_THRESHOLD_MAX} (two of the largest heap blocks), top_pad_bytes >= 0"
        )
    # all three together: any mallopt of these turns off glibc's dynamic thresholds and
    # freezes the others where they stand, so the trim threshold alone leaves large blocks
    # mmapped (the camera's step 2.6x slower) and the mmap threshold alone trims them away
    settings = {
        "mmap_threshold": MMAP_THRESHOLD_MAX,
        "trim_threshold": min(trim_bytes, 2**31 - 1),  # mallopt takes a C int
        "top_pad": min(top_pad_bytes, 2**31 - 1),
    }
    if "applied" in _state:
        if settings != _state["applied"]:
            log.warning("keep_freed_memory: already applied %s; the process keeps them", _state["applied"])
        return dict(_state["applied"])
    if not sys.platform.startswith("linux"):
        return None
    try:
        try:
            libc = ctypes.CDLL("libc.so.6")
        except OSError:  # another soname: ask the toolchain (a subprocess), only then
            libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt, version = libc.mallopt, libc.gnu_get_libc_version
    except (OSError, AttributeError):  # not glibc (musl has no gnu_get_libc_version)
        log.debug("keep_freed_memory: the C library is not glibc; allocator left as it is")
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    params = {"mmap_threshold": M_MMAP_THRESHOLD, "trim_threshold": M_TRIM_THRESHOLD, "top_pad": M_TOP_PAD}
    for name, value in settings.items():
        if mallopt(params[name], value) != 1:
            log.warning(
                "keep_freed_memory: mallopt refused %s=%d; allocator left partly as it was", name, value
            )
            return None
    version.restype = ctypes.c_char_p
    log.debug("keep_freed_memory: glibc %s, %s", version().decode(), settings)
    _state["applied"] = settings
    return dict(settings)
