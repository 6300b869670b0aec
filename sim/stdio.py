"""Keep PyBullet's C-level prints off stdout, where our commands write tables, JSON lines and status."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Send file descriptor 1 to stderr for a while: PyBullet prints to it from C (``argv[0]=`` on
    every connect), and our commands' stdout carries the tables, JSON lines and status that people
    and callers read."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        _flush_c_stdio()  # C's stdout buffer would otherwise reach fd 1 after it is restored
        os.dup2(saved, 1)
        os.close(saved)


def _flush_c_stdio() -> None:
    """``fflush(NULL)``: flush every C stdio stream of this process (no-op where libc is absent)."""
    with contextlib.suppress(OSError, AttributeError, TypeError):
        ctypes.CDLL(None).fflush(None)
