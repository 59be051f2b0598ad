"""`pinaivu-local nodes`: a gateway's nodes and the signing keys it pinned for them."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pinaivu_local.cli.common import build_settings, data_dir_option

# How long `nodes trust` waits for a node's /v1/node.
FETCH_TIMEOUT_S = 10.0
# A /v1/node answer is a few hundred bytes per key; more is not one.
MAX_NODE_DOCUMENT_BYTES = 1024 * 1024


@click.group()
def nodes() -> None:
    """A gateway's nodes (serve --nodes): the signing keys pinned for them."""


@nodes.command("trust")
@click.argument("name")
@click.option(
    "--nodes",
    "nodes_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The nodes file (default: PINAIVU_NODES_FILE).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the new pin as JSON.")
@data_dir_option
def trust(name: str, nodes_file: Path | None, as_json: bool, data_dir: Path | None) -> None:
    """Pin node NAME's current signing key on purpose (its /v1/node now), replacing any earlier pin.

    A running gateway reads the pin on its next health check and takes an untrusted node back.
    """
    import httpx

    from pinaivu_local.errors import ConfigError, StorageUnavailable
    from pinaivu_local.fleet.nodes import load_nodes
    from pinaivu_local.fleet.pins import NodePins, node_keys
    from pinaivu_local.receipts.document import MalformedReceipt
    from pinaivu_local.receipts.verify import TooDeep, read_json
    from pinaivu_local.storage.database import Database

    overrides: dict[str, object] = {"data_dir": data_dir}
    if nodes_file is not None:
        overrides["nodes_file"] = nodes_file
    settings = build_settings(**overrides)
    if settings.nodes_file is None:
        raise click.ClickException("no nodes file: pass --nodes FILE or set PINAIVU_NODES_FILE")
    try:
        specs = {spec.name: spec for spec in load_nodes(settings.nodes_file)}
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None
    spec = specs.get(name)
    if spec is None:
        raise click.ClickException(
            f"{settings.nodes_file}: no node {name!r} (nodes: {', '.join(sorted(specs)) or 'none'})"
        )
    if spec.kind != "pinaivu":
        raise click.ClickException(f"node {name} is kind {spec.kind!r}: it signs no receipts, so it has no key")
    url = f"{spec.url}/v1/node"
    try:
        with httpx.Client(timeout=FETCH_TIMEOUT_S) as client, client.stream("GET", url) as response:
            body = b""
            for piece in response.iter_raw():
                body += piece
                if len(body) > MAX_NODE_DOCUMENT_BYTES:
                    raise click.ClickException(f"node {name}: its /v1/node is over {MAX_NODE_DOCUMENT_BYTES} bytes")
        if response.status_code != 200:
            raise click.ClickException(f"node {name}: GET /v1/node answered HTTP {response.status_code}")
        keys = node_keys(read_json(body))
    except httpx.HTTPError as exc:
        raise click.ClickException(f"node {name}: cannot fetch /v1/node ({exc.__class__.__name__})") from None
    except (TooDeep, MalformedReceipt) as exc:
        raise click.ClickException(f"node {name}: its /v1/node is not a node document ({exc})") from None
    except ValueError:
        raise click.ClickException(f"node {name}: its /v1/node is not JSON") from None
    try:
        database = Database(settings.database_target, timeout_s=settings.db_timeout_s)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None
    try:
        before = NodePins(database).get(name)
        pin = NodePins(database).trust(name, spec.url, keys)
    except StorageUnavailable as exc:
        raise click.ClickException(f"{database.where}: {exc.reason}") from None
    finally:
        database.close()
    if as_json:
        click.echo(json.dumps({"name": name, **pin.public()}))
        return
    was = "" if before is None else f" (was {before.key_id}{'' if before.key_id != pin.key_id else ', unchanged'})"
    click.echo(f"node {name}: trusted key {pin.key_id} of node {pin.node_id}{was}")
