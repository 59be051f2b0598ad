"""One benchmark run: per scenario, its model, every server up side by side, then the same rounds on each in turn."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import aiohttp

from pinaivu_local.bench import cpu
from pinaivu_local.bench.load import (
    LevelResult,
    PromptSource,
    StreamResult,
    Workload,
    calibrate_prompt,
    client_session,
    duration,
    run_round,
)
from pinaivu_local.bench.model import ensure_bench_model
from pinaivu_local.bench.scenarios import STANDARD, Scenario
from pinaivu_local.bench.servers import (
    ServerProcess,
    ServerSetup,
    start_llama_cpp_server,
    start_llama_server,
    start_ours,
)
from pinaivu_local.engine.host.devices import list_devices, supports_gpu_offload
from pinaivu_local.engine.host.repack import cpu_identity, decide_repack
from pinaivu_local.errors import BenchError
from pinaivu_local.settings import STREAM_INTERVAL_MS

OURS = "pinaivu-local"
PEER = "llama_cpp.server"
LLAMA_SERVER = "llama-server"
MODEL_ID = "bench"


@dataclass(frozen=True)
class BenchConfig:
    """What to measure, and where the models and logs go."""

    work_dir: Path
    scenarios: tuple[Scenario, ...] = STANDARD
    rounds: int = 2
    threads: int = 0  # 0: every core
    weight_repack: Literal["auto", "on", "off"] = "auto"
    peer: bool = True  # also run llama_cpp.server
    llama_server: Path | None = None  # also run llama.cpp's own C++ llama-server binary
    gpu_layers: int = 0  # layers every server offloads to the GPU; -1: all of them
    stream_interval_ms: float = STREAM_INTERVAL_MS  # ours: how often a stream's new text goes out


@dataclass(frozen=True)
class ServerRun:
    """One server's results in one scenario."""

    name: str
    prompt_tokens: int  # as the server counted the prompt of the first stream measured
    levels: tuple[LevelResult, ...]
    rss_loaded: int  # bytes resident once the model is loaded and warmed up
    rss_after: int
    rss_peak: int


@dataclass(frozen=True)
class ScenarioRun:
    """Every server's results in one scenario, and how they were set up."""

    scenario: Scenario
    setup: ServerSetup
    model_bytes: int
    servers: tuple[ServerRun, ...]


@dataclass(frozen=True)
class BenchReport:
    """Everything a run measured, and the conditions it ran under."""

    config: BenchConfig
    cpu: str
    nproc: int
    threads: int
    weight_repack: bool
    runs: tuple[ScenarioRun, ...] = field(default=())
    gpus: tuple[str, ...] = ()  # the GPUs layers went to; empty when everything ran on the CPU


def run_bench(config: BenchConfig, say: Callable[[str], None]) -> BenchReport:
    """Each scenario in turn: generate its model if absent, start the servers, measure them, always stop them."""
    gpus = _offload_devices(config.gpu_layers)
    config.work_dir.mkdir(parents=True, exist_ok=True)
    # One verdict for every server, so none gets the faster (or the crashing) kernels alone.
    repack = decide_repack(config.weight_repack, config.work_dir / "data")
    threads = config.threads or os.cpu_count() or 1
    runs = tuple(_run_scenario(scenario, config, repack, threads, say) for scenario in config.scenarios)
    return BenchReport(config, cpu_identity()[0], os.cpu_count() or 1, threads, repack, runs, gpus)


def _offload_devices(gpu_layers: int) -> tuple[str, ...]:
    """The GPUs that offloaded layers go to; refuses a GPU run on a build that cannot offload."""
    if gpu_layers == 0:
        return ()
    if not supports_gpu_offload():
        raise BenchError(
            "--gpu-layers needs a llama.cpp built with GPU offload; this one runs on the CPU alone: "
            "rebuild with `make install GPU=cuda` (or GPU=metal), or leave --gpu-layers out"
        )
    return tuple(d.description or d.name for d in list_devices() or () if d.type in ("gpu", "igpu"))


def _run_scenario(
    scenario: Scenario, config: BenchConfig, repack: bool, threads: int, say: Callable[[str], None]
) -> ScenarioRun:
    say(f"{scenario.name}: preparing the model (the first run generates and quantizes the 1B one: a few minutes)")
    model = ensure_bench_model(config.work_dir, tiny=scenario.model == "tiny")
    setup = ServerSetup(
        model=model,
        model_id=MODEL_ID,
        n_ctx=scenario.n_ctx,
        parallel=scenario.parallel,
        threads=threads,
        weight_repack=repack,
        gpu_layers=config.gpu_layers,
        stream_interval_ms=config.stream_interval_ms,
    )
    starters: list[tuple[str, Callable[[ServerSetup, Path], ServerProcess]]] = [(OURS, start_ours)]
    if config.llama_server is not None:
        starters.append((LLAMA_SERVER, functools.partial(start_llama_server, config.llama_server)))
    if config.peer:
        starters.append((PEER, start_llama_cpp_server))
    servers: list[ServerProcess] = []
    try:
        for name, start in starters:
            say(
                f"{scenario.name}: starting {name} on {model.name} "
                f"(threads {threads}, repack {repack}, GPU layers {layers_label(config.gpu_layers)})"
            )
            servers.append(start(setup, config.work_dir))
        results = asyncio.run(_measure(servers, setup, scenario, config.rounds, say))
    finally:
        for server in servers:
            server.stop()
    return ScenarioRun(scenario, setup, model.stat().st_size, results)


def layers_label(gpu_layers: int) -> str:
    """How many layers go to the GPU, as the bench says it: a number, or "all"."""
    return "all" if gpu_layers < 0 else str(gpu_layers)


async def _measure(
    servers: list[ServerProcess], setup: ServerSetup, scenario: Scenario, rounds: int, say: Callable[[str], None]
) -> tuple[ServerRun, ...]:
    """Calibrate on each server, then every round on each in turn (order alternating) to share any drift."""
    prompts = PromptSource()
    headers = {"authorization": f"Bearer {setup.api_key}"}
    async with client_session(max(scenario.concurrency), headers) as client:
        words, tokens = await _calibrated(client, servers, setup, scenario.prompt_tokens, prompts)
        prefix_words = 0
        if scenario.shared_prefix_tokens:
            prefix_words, prefix_tokens = await _calibrated(
                client, servers, setup, scenario.shared_prefix_tokens, prompts
            )
            tokens += prefix_tokens
        rss_loaded = [s.rss_bytes()[0] for s in servers]
        workload = Workload(setup.model_id, words, scenario.max_tokens, prefix_words)
        levels: list[list[LevelResult]] = [[] for _ in servers]
        for concurrency in scenario.concurrency:
            results = await _level(client, servers, workload, concurrency, rounds, prompts)
            for server, level, per_server in zip(servers, results, levels, strict=True):
                per_server.append(level)
                say(
                    f"{scenario.name}: {server.name}: {concurrency} streams: {level.tokens_per_s:.1f} tok/s, "
                    f"TTFT {duration(level.ttft(50))}"
                )
    return tuple(
        # the prompt as the server's usage counted it (a chat's template included), else as calibrated
        ServerRun(
            s.name, levels[i][0].streams[0].prompt_tokens or tokens, tuple(levels[i]), rss_loaded[i], *s.rss_bytes()
        )
        for i, s in enumerate(servers)
    )


async def _calibrated(
    client: aiohttp.ClientSession, servers: list[ServerProcess], setup: ServerSetup, tokens: int, prompts: PromptSource
) -> tuple[int, int]:
    """(words, tokens) of a text that reaches `tokens` tokens, checked to tokenize alike on every server."""
    calibrated = [await calibrate_prompt(client, s.base_url, setup.model_id, tokens, prompts) for s in servers]
    if len({n for _, n in calibrated}) != 1:
        raise BenchError(f"the servers tokenize the prompt differently: {calibrated}")
    return calibrated[0]


async def _level(
    client: aiohttp.ClientSession,
    servers: list[ServerProcess],
    workload: Workload,
    concurrency: int,
    rounds: int,
    prompts: PromptSource,
) -> list[LevelResult]:
    """One concurrency on every server: the servers take turns round by round, order alternating."""
    pids = [s.process.pid for s in servers]
    walls: list[list[float]] = [[] for _ in servers]
    busy_elsewhere = [0.0] * len(servers)
    server_cpu = [0.0] * len(servers)
    streams: list[list[StreamResult]] = [[] for _ in servers]
    for round_no in range(rounds):
        order = range(len(servers)) if round_no % 2 == 0 else reversed(range(len(servers)))
        for i in order:
            before, own_before = cpu.sample(pids), cpu.process_seconds(pids[i])
            wall, results = await run_round(client, servers[i].base_url, workload, concurrency, prompts)
            busy_elsewhere[i] += cpu.background_share(before, cpu.sample(pids), wall) * wall
            server_cpu[i] += cpu.process_seconds(pids[i]) - own_before
            walls[i].append(wall)
            streams[i] += results
    return [
        LevelResult(
            concurrency,
            sum(walls[i]),
            tuple(streams[i]),
            busy_elsewhere[i] / sum(walls[i]),
            tuple(walls[i]),
            server_cpu[i],
        )
        for i in range(len(servers))
    ]
