"""The `pinaivu-local` command: a click group with subcommands; settings are built here, once."""

from __future__ import annotations

import importlib.util
import json
import logging
import socket
import sys
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from pinaivu_local import __version__
from pinaivu_local.catalog import Catalog, ModelSpec, load_catalog
from pinaivu_local.errors import BenchError, ConfigError, ModelFileError
from pinaivu_local.settings import Settings

# On SIGTERM, streams still running after this long are cut (their clients see the stream end).
GRACEFUL_SHUTDOWN_S = 5


def build_settings(**overrides: Any) -> Settings:
    """Settings from the environment (and .env), CLI options winning; one-line errors."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "settings"
        raise click.ClickException(f"invalid setting {name} (PINAIVU_{name.upper()}): {first['msg']}") from None


def open_catalog(settings: Settings) -> Catalog:
    """The catalog named by the settings, or a one-line error."""
    try:
        return load_catalog(settings.models_file, settings.models_dir)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pinaivu-local")
def main() -> None:
    """pinaivu-local: the Pinaivu OpenAI-compatible API, served from this machine."""


@main.command()
@click.option("--host", help="Interface to listen on [PINAIVU_HOST, default 127.0.0.1].")
@click.option("--port", type=int, help="Port to listen on [PINAIVU_PORT, default 8080].")
@click.option("--models-file", type=click.Path(path_type=Path), help="Model catalog [PINAIVU_MODELS_FILE].")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), help="Data directory [PINAIVU_DATA_DIR].")
@click.option(
    "--test-models",
    is_flag=True,
    default=None,
    help="Serve tiny generated models under the catalog's ids: the full API offline, meaningless text.",
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), help="[PINAIVU_LOG_LEVEL]")
def serve(**options: Any) -> None:
    """Start the API server."""
    import uvicorn

    from pinaivu_local.api.app import create_app
    from pinaivu_local.test_models import test_catalog

    settings = build_settings(**options)
    _configure_logging(settings.log_level)
    _check_port_free(settings.host, settings.port)
    catalog = open_catalog(settings)
    _prepare_data_dir(settings.data_dir)
    if settings.test_models:
        catalog = test_catalog(catalog, settings.data_dir / "test-models")
    app = create_app(settings, catalog)
    click.echo(f"pinaivu-local {__version__} on http://{settings.host}:{settings.port}/v1 (catalog {catalog.file})")
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        sys.exit(1)


@main.group()
def models() -> None:
    """Inspect the model catalog."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--models-file", type=click.Path(path_type=Path), help="Model catalog [PINAIVU_MODELS_FILE].")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), help="Data directory [PINAIVU_DATA_DIR].")
def list_models(as_json: bool, **options: Any) -> None:
    """Every catalog model, whether its file is present, and how to fetch it if not."""
    settings = build_settings(**options)
    catalog = open_catalog(settings)
    rows = [_file_state(spec) for spec in catalog.models]
    if as_json:
        click.echo(json.dumps({"catalog": str(catalog.file), "models": rows}, indent=2))
        return
    click.echo(f"catalog: {catalog.file}")
    for row in rows:
        size = f"{row['size_bytes'] / 2**20:.0f} MiB" if row["size_bytes"] else "-"
        click.echo(f"{row['id']:<16} {row['state']:<8} {size:>9}  ctx {row['n_ctx']:<6} {row['file']}")
        if row["problem"]:
            click.echo(f"{'':<16} {row['problem']}")
        if row["fetch_command"]:
            click.echo(f"{'':<16} fetch: {row['fetch_command']}")


def _concurrency_levels(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter("give stream counts separated by commas, e.g. 1,2,4,8") from None
    if not levels or min(levels) < 1:
        raise click.BadParameter("stream counts must be at least 1")
    return levels


@main.command()
@click.option(
    "--work-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where the model, server logs and results go [default: DATA_DIR/bench].",
)
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), help="Data directory [PINAIVU_DATA_DIR].")
@click.option("--concurrency", default="1,2,4,8", callback=_concurrency_levels, help="Concurrent streams to measure.")
@click.option("--prompt-tokens", type=click.IntRange(1, 1000), default=40, show_default=True)
@click.option(
    "--max-tokens", type=click.IntRange(1, 1000), default=32, show_default=True, help="New tokens per stream."
)
@click.option("--rounds", type=click.IntRange(1, 100), default=2, show_default=True, help="Rounds per concurrency.")
@click.option("--parallel", type=click.IntRange(1, 256), default=8, show_default=True, help="Our sequences.")
@click.option(
    "--weight-repack", type=click.Choice(["auto", "on", "off"]), help="For both servers [PINAIVU_WEIGHT_REPACK]."
)
@click.option("--tiny", is_flag=True, help="Use a tiny test model: checks the machinery in seconds, measures nothing.")
@click.option("--peer/--no-peer", default=True, show_default=True, help="Also measure llama_cpp.server.")
def bench(
    work_dir: Path | None,
    data_dir: Path | None,
    concurrency: tuple[int, ...],
    weight_repack: str | None,
    peer: bool,
    **options: Any,
) -> None:
    """Throughput and first-token latency against llama_cpp.server, on a Llama-3.2-1B-shaped model."""
    from pinaivu_local.bench.report import as_json, render
    from pinaivu_local.bench.runner import BenchConfig, run_bench

    settings = build_settings(data_dir=data_dir, weight_repack=weight_repack)
    _configure_logging("warning")
    missing = [m for m in ("fastapi", "sse_starlette", "starlette_context") if importlib.util.find_spec(m) is None]
    if peer and missing:
        raise click.ClickException(
            f"llama_cpp.server needs {', '.join(missing)}: pip install -e '.[bench]', or run with --no-peer"
        )
    folder = work_dir or settings.data_dir / "bench"
    config = BenchConfig(
        work_dir=folder.resolve(),
        concurrency=concurrency,
        weight_repack=settings.weight_repack,
        peer=peer,
        **options,
    )
    try:
        report = run_bench(config, lambda line: click.echo(line, err=True))
    except (BenchError, ModelFileError) as exc:
        raise click.ClickException(exc.message) from None
    results = config.work_dir / "bench-results.json"
    results.write_text(json.dumps(as_json(report), indent=2))
    click.echo(render(report))
    click.echo(f"\nresults: {results}")


def _file_state(spec: ModelSpec) -> dict[str, Any]:
    from pinaivu_local.engine.llama_model import check_gguf

    state, problem = "present", None
    try:
        check_gguf(spec.file)
    except ModelFileError as exc:
        state, problem = ("missing", None) if not spec.file.exists() else ("invalid", exc.message)
    return {
        "id": spec.id,
        "state": state,
        "file": str(spec.file),
        "size_bytes": spec.file.stat().st_size if state != "missing" else None,
        "n_ctx": spec.n_ctx,
        "n_gpu_layers": spec.n_gpu_layers,
        "parallel": spec.parallel,
        "source": spec.source,
        "problem": problem,
        "fetch_command": spec.fetch_command() if state == "missing" else None,
    }


def _check_port_free(host: str, port: int) -> None:
    """Fail in one line before loading models when the address is taken."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port} ({exc.strerror}); is another server running? Choose one with --port."
        ) from None


def _prepare_data_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot create the data directory ({exc.strerror})") from None


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # llama.cpp's own warnings are mostly tuning notes; show them only when debugging.
    llama_level = logging.DEBUG if level == "debug" else logging.ERROR
    logging.getLogger("pinaivu_local.llama_cpp").setLevel(llama_level)
    logging.getLogger("gguf").setLevel(logging.WARNING)
