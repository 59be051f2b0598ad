"""The `pinaivu-local` command: a click group with subcommands; settings are built here, once."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from pydantic import ValidationError

from pinaivu_local import __version__
from pinaivu_local.catalog import Catalog, ModelSpec, load_catalog
from pinaivu_local.errors import ConfigError, KeyNotFound, ModelFileError
from pinaivu_local.settings import Settings

if TYPE_CHECKING:
    from pinaivu_local.keys.store import KeyStore

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
@click.option("--log-format", type=click.Choice(["text", "json"]), help="Access log lines [PINAIVU_LOG_FORMAT].")
def serve(**options: Any) -> None:
    """Start the API server."""
    import uvicorn

    from pinaivu_local.api.app import create_app
    from pinaivu_local.test_models import test_catalog

    settings = build_settings(**options)
    _configure_logging(settings.log_level, settings.log_format)
    _check_port_free(settings.host, settings.port)
    catalog = open_catalog(settings)
    _prepare_data_dir(settings.data_dir)
    _bootstrap_admin_key(settings)
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


def _bootstrap_admin_key(settings: Settings) -> None:
    """Import PINAIVU_API_KEY, or on first start create an admin key and show it once."""
    from pinaivu_local.keys.bootstrap import ensure_admin_key

    with _key_store(settings) as store:
        try:
            issued = ensure_admin_key(store, settings.api_key.get_secret_value() if settings.api_key else None)
        except ConfigError as exc:
            raise click.ClickException(exc.message) from None
    if issued is not None:
        click.echo(f"Created the first admin key ({issued.record.id}):\n\n    {issued.key}\n")
        click.echo("It will not be shown again: store it now (e.g. export PINAIVU_API_KEY=...).\n")


@contextlib.contextmanager
def _key_store(settings: Settings) -> Iterator[KeyStore]:
    """The key store of the data dir, closed afterwards; one-line errors."""
    from pinaivu_local.keys.store import KeyStore
    from pinaivu_local.storage.database import Database

    try:
        database = Database(settings.database)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None
    try:
        yield KeyStore(database)
    except (ConfigError, KeyNotFound) as exc:
        raise click.ClickException(exc.message) from None
    finally:
        database.close()


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


def _configure_logging(level: str, log_format: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # access lines carry their own structure: print them bare (one JSON object per line in json mode)
    access = logging.getLogger("pinaivu_local.access")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s" if log_format == "json" else "access %(message)s"))
    access.addHandler(handler)
    access.propagate = False
    # llama.cpp's own warnings are mostly tuning notes; show them only when debugging.
    llama_level = logging.DEBUG if level == "debug" else logging.ERROR
    logging.getLogger("pinaivu_local.llama_cpp").setLevel(llama_level)
    logging.getLogger("gguf").setLevel(logging.WARNING)


data_dir_option = click.option(
    "--data-dir", type=click.Path(path_type=Path, file_okay=False), help="Data directory [PINAIVU_DATA_DIR]."
)


@main.group()
def keys() -> None:
    """Create, list, revoke and rotate API keys (works whether or not the server runs)."""


def _limit(value: int | None, name: str) -> int | None:
    if value is not None and value < 1:
        raise click.BadParameter("must be at least 1", param_hint=name)
    return value


@keys.command("create")
@click.option("--name", required=True, help="A label for the key (who or what uses it).")
@click.option("--models", "models_csv", help="Comma-separated model ids this key may use (default: all).")
@click.option("--rpm", type=int, help="Requests per minute (default: PINAIVU_DEFAULT_RPM).")
@click.option("--tpm", type=int, help="Tokens per minute (default: PINAIVU_DEFAULT_TPM).")
@click.option("--expires-in", help="Lifetime such as 30d, 12h or 90m (default: never).")
@click.option("--admin", is_flag=True, help="May use /admin (manage keys).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@data_dir_option
def create_key(
    name: str,
    models_csv: str | None,
    rpm: int | None,
    tpm: int | None,
    expires_in: str | None,
    admin: bool,
    as_json: bool,
    data_dir: Path | None,
) -> None:
    """Create a key and print it (shown this once)."""
    from pinaivu_local.keys.durations import parse_duration
    from pinaivu_local.keys.store import KeySettings

    settings = build_settings(data_dir=data_dir)
    try:
        lifetime = parse_duration(expires_in) if expires_in else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--expires-in") from None
    models = tuple(m.strip() for m in (models_csv or "").split(",") if m.strip())
    key_settings = KeySettings(
        name=name, admin=admin, models=models, rpm=_limit(rpm, "--rpm"), tpm=_limit(tpm, "--tpm"), expires_in=lifetime
    )
    with _key_store(settings) as store:
        issued = store.create(key_settings)
    if as_json:
        click.echo(json.dumps({**issued.record.public(), "key": issued.key}, indent=2))
        return
    click.echo(f"{issued.record.id}  {name}\n\n    {issued.key}\n\nStore it now: it will not be shown again.")


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@data_dir_option
def list_keys(as_json: bool, data_dir: Path | None) -> None:
    """Every key (never the key itself): id, name, state, limits, last use."""
    settings = build_settings(data_dir=data_dir)
    with _key_store(settings) as store:
        rows = [k.public() for k in store.list()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        limits = f"rpm {row['rpm'] or 'default'} tpm {row['tpm'] or 'default'}"
        scope = "admin" if row["admin"] else ",".join(row["models"]) or "all models"
        click.echo(
            f"{row['id']}  {row['prefix']:<16} {row['state']:<8} {row['name']:<20} {scope:<24} {limits}  "
            f"last used {row['last_used_at'] or 'never'}"
        )


@keys.command("revoke")
@click.argument("key_id")
@data_dir_option
def revoke_key(key_id: str, data_dir: Path | None) -> None:
    """Revoke a key; a running server refuses it from its next request."""
    with _key_store(build_settings(data_dir=data_dir)) as store:
        record = store.revoke(key_id)
    click.echo(f"revoked {record.id} ({record.name})")


@keys.command("rotate")
@click.argument("key_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@data_dir_option
def rotate_key(key_id: str, as_json: bool, data_dir: Path | None) -> None:
    """Revoke a key and issue a replacement with the same settings."""
    with _key_store(build_settings(data_dir=data_dir)) as store:
        issued = store.rotate(key_id)
    if as_json:
        click.echo(json.dumps({**issued.record.public(), "key": issued.key, "replaces": key_id}, indent=2))
        return
    click.echo(f"revoked {key_id}; its replacement {issued.record.id}:\n\n    {issued.key}\n\nStore it now.")
