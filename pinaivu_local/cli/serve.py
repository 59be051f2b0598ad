"""`pinaivu-local serve`: check the address, optionally pull missing models, then run the API server."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import click

from pinaivu_local import __version__
from pinaivu_local.catalog import Catalog
from pinaivu_local.cli.common import (
    build_settings,
    catalog_options,
    configure_logging,
    key_store,
    load_llama_cpp,
    open_catalog,
    pull_models,
)
from pinaivu_local.errors import ConfigError, IdentityError
from pinaivu_local.settings import Settings

# On SIGTERM, streams still running after this long are cut (their clients see the stream end).
GRACEFUL_SHUTDOWN_S = 5


@click.command()
@click.option("--host", help="Interface to listen on [PINAIVU_HOST, default 127.0.0.1].")
@click.option("--port", type=int, help="Port to listen on [PINAIVU_PORT, default 8080].")
@catalog_options
@click.option(
    "--test-models",
    is_flag=True,
    default=None,
    help="Serve tiny generated models under the catalog's ids: the full API offline, meaningless text.",
)
@click.option(
    "--pull", "pull", is_flag=True, help="Pull missing models first (a failure is one line; serving goes on)."
)
@click.option(
    "--nodes",
    "nodes_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="A nodes file: route requests to these nodes too (a gateway) [PINAIVU_NODES_FILE].",
)
@click.option(
    "--no-local",
    is_flag=True,
    default=None,
    help="With --nodes: a pure gateway, no model of its own [PINAIVU_NO_LOCAL].",
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), help="[PINAIVU_LOG_LEVEL]")
@click.option("--log-format", type=click.Choice(["text", "json"]), help="Access log lines [PINAIVU_LOG_FORMAT].")
def serve(pull: bool, **options: Any) -> None:
    """Start the API server."""
    from pinaivu_local.engine.host.openmp import limit_spinning

    limit_spinning()  # before anything loads llama.cpp
    load_llama_cpp()  # a library that cannot load is one line, not a traceback from an import below
    import uvicorn

    from pinaivu_local.api.app import create_app
    from pinaivu_local.api.http.connections import guarded_protocol
    from pinaivu_local.tiny_models.catalog import tiny_catalog

    settings = build_settings(**options)
    if settings.no_local and settings.nodes_file is None:
        raise click.ClickException("--no-local needs --nodes: a server with neither has nothing to serve")
    configure_logging(settings.log_level, settings.log_format)
    _check_port_free(settings.host, settings.port)
    catalog = open_catalog(settings)
    _prepare_data_dir(settings.data_dir)
    _check_identity(settings)
    _bootstrap_admin_key(settings)
    if settings.test_models:
        catalog = tiny_catalog(catalog, settings.data_dir / "test-models")
    elif pull:
        _pull_missing(settings, catalog)
    app = create_app(settings, catalog)
    click.echo(f"pinaivu-local {__version__} on http://{settings.host}:{settings.port}/v1 (catalog {catalog.file})")
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        lifespan="on",
        loop="auto",  # uvloop where it is installed (a dependency off Windows)
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        http=guarded_protocol(settings.header_timeout_s, settings.max_connections),
    )
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        sys.exit(1)


def _bootstrap_admin_key(settings: Settings) -> None:
    """Import PINAIVU_API_KEY, or on first start create an admin key and show it once."""
    from pinaivu_local.keys.bootstrap import ensure_admin_key

    with key_store(settings) as store:
        try:
            issued = ensure_admin_key(store, settings.api_key.get_secret_value() if settings.api_key else None)
        except ConfigError as exc:
            raise click.ClickException(exc.message) from None
    if issued is not None:
        click.echo(f"Created the first admin key ({issued.record.id}):\n\n    {issued.key}\n")
        click.echo("It will not be shown again: store it now (e.g. export PINAIVU_API_KEY=...).\n")


def _check_identity(settings: Settings) -> None:
    """Create the receipt-signing identity on first start, or fail in one line when it is unusable."""
    from pinaivu_local.receipts.identity import load_or_create

    try:
        node = load_or_create(settings.identity_dir)
    except IdentityError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"node {node.node_id}: receipts signed with Ed25519 key {node.current.key_id} (GET /v1/node)")


def _pull_missing(settings: Settings, catalog: Catalog) -> None:
    """Pull the models whose file is not there yet; failures are reported and serving goes on."""
    from pinaivu_local.weights.inventory import inspect

    missing = [spec for spec in catalog.models if spec.source and inspect(spec).state != "ready"]
    if missing:
        pull_models(settings, missing)


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
