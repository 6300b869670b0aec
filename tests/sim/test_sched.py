"""The real-time loop's scheduler hints are applied inside the run and undone after it."""

from __future__ import annotations

import ctypes
import os
import platform

import pytest

from sim import sched

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_setscheduler") or platform.machine() not in sched._SYS_SCHED_GETATTR,
    reason="Linux sched_setattr only",
)


def _slice_ns() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    return sched._get_sched_attr(libc, sched._SYS_SCHED_GETATTR[platform.machine()])[5]


def _timer_slack_ns() -> int:
    return ctypes.CDLL(None).prctl(sched._PR_GET_TIMERSLACK, 0, 0, 0, 0)


def test_latency_hints_are_undone_on_exit():
    slice_before, slack_before = _slice_ns(), _timer_slack_ns()
    with sched.latency_hints(200, timer_slack_ns=2000):
        assert _timer_slack_ns() == 2000
        inside = _slice_ns()
        # kernels with EEVDF custom slices (>= 6.12) grant it; older ones keep their default
        assert inside in (200_000, slice_before)
    assert (_slice_ns(), _timer_slack_ns()) == (slice_before, slack_before)


def test_latency_hints_with_no_slice_leave_the_slice_alone():
    before = _slice_ns()
    with sched.latency_hints(0):
        assert _slice_ns() == before
