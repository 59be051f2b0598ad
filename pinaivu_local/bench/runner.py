"""One benchmark run: the model, both servers up side by side, then the same rounds on each in turn."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx

from pinaivu_local.bench import cpu
from pinaivu_local.bench.load import LevelResult, PromptSource, StreamResult, Workload, calibrate_prompt, run_round
from pinaivu_local.bench.model import ensure_bench_model
from pinaivu_local.bench.servers import (
    ServerProcess,
    ServerSetup,
    start_llama_cpp_server,
    start_llama_server,
    start_ours,
)
from pinaivu_local.engine.repack import cpu_identity, decide_repack
from pinaivu_local.errors import BenchError

OURS = "pinaivu-local"
PEER = "llama_cpp.server"
LLAMA_SERVER = "llama-server"
MODEL_ID = "bench"


@dataclass(frozen=True)
class BenchConfig:
    """What to measure, and where the model and logs go."""

    work_dir: Path
    concurrency: tuple[int, ...] = (1, 2, 4, 8)
    prompt_tokens: int = 40
    max_tokens: int = 32
    rounds: int = 2
    parallel: int = 8
    n_ctx: int = 2048
    threads: int = 0  # 0: every core
    weight_repack: Literal["auto", "on", "off"] = "auto"
    tiny: bool = False  # the tiny test model instead of the 1B-shaped one: checks the machinery
    peer: bool = True  # also run llama_cpp.server
    llama_server: Path | None = None  # also run llama.cpp's own C++ llama-server binary


@dataclass(frozen=True)
class ServerRun:
    """One server's results."""

    name: str
    prompt_tokens: int
    levels: tuple[LevelResult, ...]
    rss_loaded: int  # bytes resident once the model is loaded and warmed up
    rss_after: int
    rss_peak: int


@dataclass(frozen=True)
class BenchReport:
    """Everything a run measured, and the conditions it ran under."""

    config: BenchConfig
    setup: ServerSetup
    cpu: str
    nproc: int
    model_bytes: int
    runs: tuple[ServerRun, ...] = field(default=())


def run_bench(config: BenchConfig, say: Callable[[str], None]) -> BenchReport:
    """Generate the model if absent, start the servers, measure them, and always stop them."""
    config.work_dir.mkdir(parents=True, exist_ok=True)
    say("preparing the model (the first run generates and quantizes it: a few minutes)")
    model = ensure_bench_model(config.work_dir, tiny=config.tiny)
    # One verdict for both servers, so neither gets the faster (or the crashing) kernels alone.
    repack = decide_repack(config.weight_repack, config.work_dir / "data")
    setup = ServerSetup(
        model=model,
        model_id=MODEL_ID,
        n_ctx=config.n_ctx,
        parallel=config.parallel,
        threads=config.threads or os.cpu_count() or 1,
        weight_repack=repack,
    )
    starters: list[tuple[str, Callable[[ServerSetup, Path], ServerProcess]]] = [(OURS, start_ours)]
    if config.peer:
        starters.append((PEER, start_llama_cpp_server))
    if config.llama_server is not None:
        starters.append((LLAMA_SERVER, functools.partial(start_llama_server, config.llama_server)))
    servers: list[ServerProcess] = []
    try:
        for name, start in starters:
            say(f"starting {name} on {model.name} (threads {setup.threads}, weight repack {'on' if repack else 'off'})")
            servers.append(start(setup, config.work_dir))
        runs = asyncio.run(_measure(servers, setup, config, say))
    finally:
        for server in servers:
            server.stop()
    return BenchReport(config, setup, cpu_identity()[0], os.cpu_count() or 1, model.stat().st_size, runs)


async def _measure(
    servers: list[ServerProcess], setup: ServerSetup, config: BenchConfig, say: Callable[[str], None]
) -> tuple[ServerRun, ...]:
    """Calibrate on each server, then every round on each in turn (order alternating) to share any drift."""
    prompts = PromptSource()
    limits = httpx.Limits(max_connections=max(config.concurrency) + 4)
    headers = {"authorization": f"Bearer {setup.api_key}"}
    async with httpx.AsyncClient(limits=limits, headers=headers) as client:
        calibrated = [
            await calibrate_prompt(client, s.base_url, setup.model_id, config.prompt_tokens, prompts) for s in servers
        ]
        if len({tokens for _, tokens in calibrated}) != 1:
            raise BenchError(f"the servers tokenize the prompt differently: {calibrated}")
        rss_loaded = [s.rss_bytes()[0] for s in servers]
        workload = Workload(setup.model_id, calibrated[0][0], config.max_tokens)
        levels: list[list[LevelResult]] = [[] for _ in servers]
        for concurrency in config.concurrency:
            results = await _level(client, servers, workload, concurrency, config.rounds, prompts)
            for server, level, per_server in zip(servers, results, levels, strict=True):
                per_server.append(level)
                say(
                    f"{server.name}: {concurrency} streams: {level.tokens_per_s:.1f} tok/s, TTFT {level.ttft(50):.2f} s"
                )
    return tuple(
        ServerRun(s.name, calibrated[i][1], tuple(levels[i]), rss_loaded[i], *s.rss_bytes())
        for i, s in enumerate(servers)
    )


async def _level(
    client: httpx.AsyncClient,
    servers: list[ServerProcess],
    workload: Workload,
    concurrency: int,
    rounds: int,
    prompts: PromptSource,
) -> list[LevelResult]:
    """One concurrency on every server: the servers take turns round by round, order alternating."""
    pids = [s.process.pid for s in servers]
    walls = [0.0] * len(servers)
    busy_elsewhere = [0.0] * len(servers)
    streams: list[list[StreamResult]] = [[] for _ in servers]
    for round_no in range(rounds):
        order = range(len(servers)) if round_no % 2 == 0 else reversed(range(len(servers)))
        for i in order:
            before = cpu.sample(pids)
            wall, results = await run_round(client, servers[i].base_url, workload, concurrency, prompts)
            busy_elsewhere[i] += cpu.background_share(before, cpu.sample(pids), wall) * wall
            walls[i] += wall
            streams[i] += results
    return [
        LevelResult(concurrency, walls[i], tuple(streams[i]), busy_elsewhere[i] / walls[i]) for i in range(len(servers))
    ]
