"""Other processes' share of the machine, from /proc."""

from __future__ import annotations

import os

import pytest

from pinaivu_local.bench.cpu import CpuSample, background_share, sample


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
