"""CPU time from /proc: how much of the machine something other than the measured server used."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class CpuSample:
    """Busy CPU seconds of the whole machine and of the processes we account for."""

    machine: float
    ours: float


def sample(pids: list[int]) -> CpuSample:
    """Busy seconds so far: the machine's, and those of `pids` plus this process."""
    return CpuSample(_machine_busy(), sum(_process_busy(pid) for pid in [os.getpid(), *pids]))


def background_share(before: CpuSample, after: CpuSample, wall_s: float) -> float:
    """Fraction of all CPUs busy with other work between two samples (0 where /proc is absent)."""
    capacity = wall_s * (os.cpu_count() or 1)
    other = (after.machine - before.machine) - (after.ours - before.ours)
    return max(0.0, other / capacity) if capacity > 0 else 0.0


def _machine_busy() -> float:
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(values) - values[3] - values[4]) / _TICKS


def process_seconds(pid: int) -> float:
    """CPU seconds `pid` has used so far (0 where /proc is absent)."""
    return _process_busy(pid)


def thread_seconds(pid: int) -> dict[str, float]:
    """CPU seconds each thread of `pid` has used so far, by "tid name" (empty where /proc is absent)."""
    used = {}
    tasks = Path(f"/proc/{pid}/task")
    for task in tasks.iterdir() if tasks.is_dir() else ():
        try:
            name = (task / "comm").read_text().strip()
        except OSError:  # the thread ended meanwhile
            continue
        used[f"{task.name} {name}"] = _stat_seconds(task / "stat")
    return used


def _process_busy(pid: int) -> float:
    return _stat_seconds(Path(f"/proc/{pid}/stat"))


def _stat_seconds(stat_file: Path) -> float:
    """utime + stime of a process's or thread's stat file, in seconds (0 where it cannot be read)."""
    try:
        stat = stat_file.read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime
