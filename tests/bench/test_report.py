"""The report: where the layers ran, and the tables' times and ratios, in words and in the JSON."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pinaivu_local.bench.load import LevelResult, StreamResult
from pinaivu_local.bench.report import as_json, render
from pinaivu_local.bench.runner import LLAMA_SERVER, OURS, BenchConfig, BenchReport, ScenarioRun, ServerRun
from pinaivu_local.bench.scenarios import STANDARD
from pinaivu_local.bench.servers import ServerSetup


def _report(gpu_layers: int, gpus: tuple[str, ...]) -> BenchReport:
    config = BenchConfig(work_dir=Path("/bench"), scenarios=(), gpu_layers=gpu_layers)
    return BenchReport(config, "Some CPU", 16, 16, False, (), gpus)


def test_the_report_names_the_gpu_and_the_layers() -> None:
    assert "all layers offloaded to NVIDIA H200 by every server" in render(_report(-1, ("NVIDIA H200",)))
    assert "12 layers offloaded to NVIDIA H200 by every server" in render(_report(12, ("NVIDIA H200",)))
    assert "every layer on the CPU" in render(_report(0, ()))
    data = as_json(_report(-1, ("NVIDIA H200",)))
    assert (data["gpu_layers"], data["gpus"]) == (-1, ["NVIDIA H200"])


def test_a_scenario_table_shows_times_to_first_token_in_milliseconds_with_their_ratio() -> None:
    def level(ttft_s: float) -> LevelResult:
        streams = tuple(StreamResult(ttft_s, 0.05, 64, "length") for _ in range(8))
        return LevelResult(concurrency=1, wall_s=0.4, streams=streams, round_walls=(0.4,))

    scenario = dataclasses.replace(STANDARD[0], concurrency=(1,))
    setup = ServerSetup(Path("/bench/m.gguf"), "bench", n_ctx=4096, parallel=1, threads=2, weight_repack=False)
    servers = tuple(
        ServerRun(name, 40, (level(ttft_s),), 1, 1, 1) for name, ttft_s in ((OURS, 0.0052), (LLAMA_SERVER, 0.0039))
    )
    run = ScenarioRun(scenario, setup, 1, servers)
    report = BenchReport(BenchConfig(work_dir=Path("/bench"), scenarios=()), "Some CPU", 2, 2, False, (run,))
    text = render(report)
    assert "| 5.2 ms | 5.2 ms |" in text and "| 3.9 ms | 3.9 ms |" in text  # p50 and p95
    assert "| same, time to first token p50 | 5.2 ms | 3.9 ms | 0.75x |" in text
    assert as_json(report)["scenarios"][0]["servers"][0]["levels"][0]["best_round_ttft_p50_s"] == 0.0052
