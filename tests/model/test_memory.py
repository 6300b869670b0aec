"""keep_freed_memory: a training step's freed blocks stay in the heap (no fresh page faults)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from twin.model.memory import keep_freed_memory

STEP_FAULTS = """
import resource, sys
import numpy as np
from twin.model.memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory() is not None

def step():  # like a training step: a few 20 MB blocks allocated, then all freed
    blocks = [np.ones(5_000_000, dtype=np.float32) for _ in range(4)]
    del blocks

for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

glibc = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc",
    reason="keep_freed_memory tunes glibc's malloc",
)


def page_faults(mode: str) -> int:
    """Minor page faults of ten 80 MB steps in a fresh interpreter (the setting is process-wide)."""
    env = {**os.environ, "NUMPY_MADVISE_HUGEPAGE": "0"}  # 4 KiB pages: counts free of the host's THP
    out = subprocess.run(
        [sys.executable, "-c", STEP_FAULTS, mode],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env=env,
    )
    return int(out.stdout.strip().splitlines()[-1])


@glibc
def test_freed_blocks_are_reused_instead_of_faulted_in_again() -> None:
    default, kept = page_faults("default"), page_faults("keep")
    # by default glibc trims what a step freed, so the next one faults fresh pages in (~195,000 4 KiB
    # pages over the ten steps here); kept, the blocks are reused (0 here)
    assert default > 5000, default
    assert kept < default / 20, (default, kept)


@glibc
def test_settings_are_reported_and_applied_once() -> None:
    first = keep_freed_memory()
    assert first is not None and first["mmap_threshold"] == 32 * 1024 * 1024
    assert keep_freed_memory() == first


def test_a_trim_threshold_below_two_blocks_is_refused() -> None:
    with pytest.raises(ValueError, match="trim_bytes"):
        keep_freed_memory(trim_bytes=1 << 20)
