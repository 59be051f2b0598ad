"""`pinaivu-local keys`: create, list, revoke and rotate API keys on the data dir's database."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import click

from pinaivu_local.cli.common import build_settings
from pinaivu_local.errors import ConfigError, KeyNotFound, StorageUnavailable
from pinaivu_local.keys.store import KeyStore
from pinaivu_local.settings import Settings


@contextlib.contextmanager
def key_store(settings: Settings) -> Iterator[KeyStore]:
    """The key store of the data dir, closed afterwards; one-line errors."""
    from pinaivu_local.storage.database import Database

    try:
        database = Database(settings.database)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None
    try:
        yield KeyStore(database)
    except (ConfigError, KeyNotFound) as exc:
        raise click.ClickException(exc.message) from None
    except StorageUnavailable as exc:  # its message names no file (it is written for HTTP clients)
        raise click.ClickException(f"{settings.database}: {exc.reason}") from None
    finally:
        database.close()


data_dir_option = click.option(
    "--data-dir", type=click.Path(path_type=Path, file_okay=False), help="Data directory [PINAIVU_DATA_DIR]."
)


@click.group()
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
    with key_store(settings) as store:
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
    with key_store(settings) as store:
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
    with key_store(build_settings(data_dir=data_dir)) as store:
        record = store.revoke(key_id)
    click.echo(f"revoked {record.id} ({record.name})")


@keys.command("rotate")
@click.argument("key_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@data_dir_option
def rotate_key(key_id: str, as_json: bool, data_dir: Path | None) -> None:
    """Revoke a key and issue a replacement with the same settings."""
    with key_store(build_settings(data_dir=data_dir)) as store:
        issued = store.rotate(key_id)
    if as_json:
        click.echo(json.dumps({**issued.record.public(), "key": issued.key, "replaces": key_id}, indent=2))
        return
    click.echo(f"revoked {key_id}; its replacement {issued.record.id}:\n\n    {issued.key}\n\nStore it now.")
