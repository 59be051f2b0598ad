"""Other processes' share of the machine, from /proc."""

from __future__ import annotations

import os
import threading
import time

import pytest

from pinaivu_local.bench.cpu import CpuSample, background_share, sample, thread_seconds


def test_share_is_what_others_used_of_all_cpus() -> None:
    n = os.cpu_count() or 1
    before, after = CpuSample(machine=10.0, ours=4.0), CpuSample(machine=10.0 + n, ours=4.0 + n / 2)
    assert background_share(before, after, wall_s=1.0) == pytest.approx(0.5)
    assert background_share(before, CpuSample(machine=10.0, ours=5.0), wall_s=1.0) == 0.0  # never negative
    assert background_share(before, after, wall_s=0.0) == 0.0


def test_sample_counts_this_process() -> None:
    first = sample([])
    sum(i * i for i in range(2_000_000))  # burn a little CPU here
    second = sample([])
    assert second.ours >= first.ours and second.machine >= first.machine


def test_thread_seconds_charge_the_thread_that_worked() -> None:
    """The calling thread's entry grows with work done on it; an idle thread's does not."""
    idle = threading.Event()
    sleeper = threading.Thread(target=idle.wait)
    sleeper.start()
    try:
        me = f"{threading.get_native_id()} "
        first = thread_seconds(os.getpid())
        deadline = time.thread_time() + 0.1
        while time.thread_time() < deadline:  # burn 0.1 s of this thread's CPU
            pass
        second = thread_seconds(os.getpid())
    finally:
        idle.set()
        sleeper.join()
    mine = next(name for name in second if name.startswith(me))
    assert second[mine] - first[mine] >= 0.05
    sleeping = next(name for name in second if name.startswith(f"{sleeper.native_id} "))
    assert second[sleeping] - first.get(sleeping, 0.0) < 0.05
