"""`pinaivu-local identity`: the node's receipt-signing identity (nothing to do with API keys)."""

from __future__ import annotations

import json
from collections.abc import Callable

import click

from pinaivu_local.cli.common import build_settings, data_dir_option
from pinaivu_local.errors import IdentityError
from pinaivu_local.receipts.identity import NodeIdentity, load_or_create, rotate


@click.group()
def identity() -> None:
    """Show or rotate the Ed25519 identity that signs this node's receipts."""


@identity.command("show")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print what GET /v1/node answers.")
def show(data_dir: str | None, as_json: bool) -> None:
    """The node id and its public keys (created on first use)."""
    settings = build_settings(data_dir=data_dir)
    _print(_or_exit(lambda: load_or_create(settings.identity_dir)), as_json)


@identity.command("rotate")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print what GET /v1/node will answer.")
def rotate_identity(data_dir: str | None, as_json: bool) -> None:
    """Sign with a new key from the next server start; the old public key stays listed as retired."""
    settings = build_settings(data_dir=data_dir)
    new = _or_exit(lambda: rotate(settings.identity_dir))
    _print(new, as_json)
    if not as_json:
        click.echo("A running server signs with the old key until it is restarted.")


def _or_exit(load: Callable[[], NodeIdentity]) -> NodeIdentity:
    try:
        return load()
    except IdentityError as exc:
        raise click.ClickException(exc.message) from None


def _print(node: NodeIdentity, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"object": "node", **node.public()}, indent=2))
        return
    click.echo(f"node {node.node_id}")
    click.echo(f"key  {node.current.key_id} ed25519 {node.current.public_key} (since {node.current.created_at})")
    for key in node.retired:
        click.echo(f"retired {key.key_id} ed25519 {key.public_key} (retired {key.retired_at})")
