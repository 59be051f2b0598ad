"""The report's header says where the layers ran, in words and in the JSON."""

from __future__ import annotations

from pathlib import Path

from pinaivu_local.bench.report import as_json, render
from pinaivu_local.bench.runner import BenchConfig, BenchReport


def _report(gpu_layers: int, gpus: tuple[str, ...]) -> BenchReport:
    config = BenchConfig(work_dir=Path("/bench"), scenarios=(), gpu_layers=gpu_layers)
    return BenchReport(config, "Some CPU", 16, 16, False, (), gpus)


def test_the_report_names_the_gpu_and_the_layers() -> None:
    assert "all layers offloaded to NVIDIA H200 by every server" in render(_report(-1, ("NVIDIA H200",)))
    assert "12 layers offloaded to NVIDIA H200 by every server" in render(_report(12, ("NVIDIA H200",)))
    assert "every layer on the CPU" in render(_report(0, ()))
    data = as_json(_report(-1, ("NVIDIA H200",)))
    assert (data["gpu_layers"], data["gpus"]) == (-1, ["NVIDIA H200"])
