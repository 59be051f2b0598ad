"""`pinaivu-local bench`: throughput and first-token latency against llama-server and llama_cpp.server."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import click

from pinaivu_local.bench.scenarios import NAMES, select
from pinaivu_local.children import is_frozen
from pinaivu_local.cli.common import build_settings, configure_logging, data_dir_option
from pinaivu_local.errors import BenchError, ModelFileError
from pinaivu_local.settings import MAX_STREAM_INTERVAL_MS, STREAM_INTERVAL_MS


def _gpu_layers(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    if value == "all":
        return -1
    try:
        layers = int(value)
    except ValueError:
        raise click.BadParameter("give a number of layers, or 'all'") from None
    if layers < 0:
        raise click.BadParameter("give a number of layers (0 or more), or 'all'")
    return layers


def _concurrency_levels(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        levels = tuple(int(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter("give stream counts separated by commas, e.g. 1,2,4,8") from None
    if not levels or min(levels) < 1:
        raise click.BadParameter("stream counts must be at least 1")
    return levels


@click.command()
@click.option(
    "--work-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where the models, server logs and results go [default: DATA_DIR/bench].",
)
@data_dir_option
@click.option(
    "--scenario",
    "scenarios",
    type=click.Choice(NAMES),
    multiple=True,
    help="Measure only this scenario (repeatable) [default: all].",
)
@click.option("--concurrency", callback=_concurrency_levels, help="Concurrent streams, for every scenario.")
@click.option("--prompt-tokens", type=click.IntRange(1, 1000), help="Prompt tokens per stream, for every scenario.")
@click.option("--max-tokens", type=click.IntRange(1, 1000), help="New tokens per stream, for every scenario.")
@click.option("--rounds", type=click.IntRange(1, 100), default=3, show_default=True, help="Rounds per concurrency.")
@click.option("--parallel", type=click.IntRange(1, 256), help="Sequences (ours) and slots (llama-server).")
@click.option(
    "--threads", type=click.IntRange(0, 1024), default=0, show_default=True, help="Per server; 0: every core."
)
@click.option(
    "--weight-repack", type=click.Choice(["auto", "on", "off"]), help="For every server [PINAIVU_WEIGHT_REPACK]."
)
@click.option(
    "--gpu-layers",
    default="0",
    show_default=True,
    callback=_gpu_layers,
    help="Layers every server offloads to the GPU: a number, or 'all' (needs a GPU build: make install GPU=cuda).",
)
@click.option(
    "--stream-interval-ms",
    type=click.FloatRange(0, MAX_STREAM_INTERVAL_MS),
    default=STREAM_INTERVAL_MS,
    show_default=True,
    help="How often our server sends a stream's new text (its PINAIVU_STREAM_INTERVAL_MS); 0: every token.",
)
@click.option("--tiny", is_flag=True, help="Every scenario on the tiny test model: checks the machinery in seconds.")
@click.option("--peer/--no-peer", default=True, show_default=True, help="Also measure llama_cpp.server.")
@click.option(
    "--llama-server",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    envvar="PINAIVU_BENCH_LLAMA_SERVER",
    help="Also measure llama.cpp's own llama-server: the path of a built binary [PINAIVU_BENCH_LLAMA_SERVER].",
)
@click.option(
    "--gateway",
    "gateway_requests",
    type=click.IntRange(10, 100_000),
    help="Instead: what a gateway in front of one node adds to each request (p50, p99), over this many requests.",
)
@click.option(
    "--embeddings",
    "embedding_rounds",
    type=click.IntRange(1, 10_000),
    help="Instead: embeddings/s for this many 64-input requests, ours and --llama-server's (--embeddings) on one GGUF.",
)
def bench(
    work_dir: Path | None,
    data_dir: Path | None,
    scenarios: tuple[str, ...],
    concurrency: tuple[int, ...] | None,
    prompt_tokens: int | None,
    max_tokens: int | None,
    rounds: int,
    parallel: int | None,
    threads: int,
    weight_repack: str | None,
    gpu_layers: int,
    stream_interval_ms: float,
    tiny: bool,
    peer: bool,
    llama_server: Path | None,
    gateway_requests: int | None,
    embedding_rounds: int | None,
) -> None:
    """Throughput and first-token latency against llama-server and llama_cpp.server, scenario by scenario."""
    from pinaivu_local.bench.report import as_json, render
    from pinaivu_local.bench.runner import BenchConfig, run_bench

    settings = build_settings(data_dir=data_dir, weight_repack=weight_repack)
    configure_logging("warning", "text")
    if gateway_requests is not None:
        from pinaivu_local.bench.gateway import measure_gateway

        folder = (work_dir or settings.data_dir / "bench").resolve() / "gateway"
        try:
            latency = measure_gateway(folder, gateway_requests, lambda line: click.echo(line, err=True))
        except BenchError as exc:
            raise click.ClickException(exc.message) from None
        click.echo(latency.render())
        return
    if embedding_rounds is not None:
        from pinaivu_local.bench.embeddings import measure_embeddings

        folder = (work_dir or settings.data_dir / "bench").resolve() / "embeddings"
        try:
            rate = measure_embeddings(
                folder,
                embedding_rounds,
                llama_server=llama_server,
                threads=threads,
                tiny=tiny,
                echo=lambda line: click.echo(line, err=True),
            )
        except BenchError as exc:
            raise click.ClickException(exc.message) from None
        (folder / "bench-embeddings.json").write_text(json.dumps(rate.as_json(), indent=2))
        click.echo(rate.render())
        click.echo(f"\nresults: {folder / 'bench-embeddings.json'}")
        return
    missing = [m for m in ("fastapi", "sse_starlette", "starlette_context") if importlib.util.find_spec(m) is None]
    if peer and missing:
        how = "this binary was built without them" if is_frozen() else "pip install -e '.[bench]'"
        raise click.ClickException(f"llama_cpp.server needs {', '.join(missing)}: {how}, or run with --no-peer")
    folder = work_dir or settings.data_dir / "bench"
    chosen = select(
        scenarios or NAMES,
        tiny=tiny,
        concurrency=concurrency,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        parallel=parallel,
    )
    config = BenchConfig(
        work_dir=folder.resolve(),
        scenarios=chosen,
        rounds=rounds,
        threads=threads,
        weight_repack=settings.weight_repack,
        peer=peer,
        llama_server=llama_server,
        gpu_layers=gpu_layers,
        stream_interval_ms=stream_interval_ms,
    )
    try:
        report = run_bench(config, lambda line: click.echo(line, err=True))
    except (BenchError, ModelFileError) as exc:
        raise click.ClickException(exc.message) from None
    results = config.work_dir / "bench-results.json"
    results.write_text(json.dumps(as_json(report), indent=2))
    click.echo(render(report))
    click.echo(f"\nresults: {results}")
