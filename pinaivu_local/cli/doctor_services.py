"""What `doctor` checks of the services it is configured with: the Postgres server, Redis, a gateway's nodes.

Each check returns plain data with a `problem` (None when it passed); doctor_checks.py turns problems into
errors. Nothing here changes a service: the database probe rolls back, the Redis script only echoes.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx
from sqlalchemy import create_engine, inspect
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, select

from pinaivu_local.errors import ConfigError
from pinaivu_local.fleet.nodes import NodeSpec, load_nodes
from pinaivu_local.fleet.pins import NodePin, node_keys
from pinaivu_local.fleet.poller import CHECK_TIMEOUT_S
from pinaivu_local.receipts.document import MalformedReceipt
from pinaivu_local.settings import Settings

# A Lua script that only echoes its argument: EVALSHA (loaded on NOSCRIPT), as the rate limiter calls its own.
_ECHO = "return ARGV[1]"


def check_postgres(url: str, timeout_s: float) -> dict[str, Any]:
    """Connect, read which migrations it has had, write a row; rolled back."""
    from pinaivu_local.storage.probe import probe_server

    return probe_server(url, timeout_s)


def check_redis(url: str, timeout_s: float) -> dict[str, Any]:
    """Connect, then a Lua script's round trip (the rate limits are Lua scripts)."""
    import redis

    row: dict[str, Any] = {"url": masked(url), "connected": False, "server_version": None, "script": False}
    row["problem"] = None
    step = "cannot connect"
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    except ValueError as exc:  # not a redis:// URL
        row["problem"] = str(exc)
        return row
    try:
        row["server_version"] = client.info("server").get("redis_version")
        row["connected"] = True
        step = "a Lua script failed"
        token = secrets.token_hex(8)
        answer = client.register_script(_ECHO)(args=[token])
        if answer != token.encode():
            row["problem"] = f"a Lua script answered {answer!r}, not its argument"
        else:
            row["script"] = True
    except redis.RedisError as exc:
        row["problem"] = f"{step}: {exc}"
    finally:
        client.close()
    return row


def check_nodes(
    path: Path, timeout_s: float = CHECK_TIMEOUT_S, pins: dict[str, NodePin] | None = None
) -> dict[str, Any]:
    """The nodes file readable, and each node reachable with the key this gateway presents, signing with the
    key the gateway pinned for it (`pins`, by name: see pinned_keys; None: not checked)."""
    row: dict[str, Any] = {"file": str(path), "nodes": [], "problem": None}
    try:
        nodes = load_nodes(path)
    except ConfigError as exc:
        row["problem"] = exc.message
        return row
    with httpx.Client(timeout=timeout_s) as client:
        row["nodes"] = [_check_node(client, node, pins) for node in nodes]
    return row


def pinned_keys(settings: Settings) -> dict[str, NodePin] | None:
    """The node keys this gateway pinned (table node_pins, fleet/pins.py), read without migrating or writing
    anything: {} before the first pin; None where the database cannot be read (its own check says why)."""
    if settings.database_url is not None:
        url = settings.database_url.get_secret_value()
    elif settings.database.is_file():
        url = f"sqlite:///file:{settings.database}?mode=ro&uri=true"
    else:
        return {}
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table(NodePin.__tablename__):
                return {}
            with Session(conn) as session:
                return {pin.name: pin for pin in session.exec(select(NodePin))}
    except SQLAlchemyError:
        return None
    finally:
        engine.dispose()


def _check_node(client: httpx.Client, node: NodeSpec, pins: dict[str, NodePin] | None) -> dict[str, Any]:
    """GET its /v1/node (a pinaivu node's identity: the key its receipts are signed with), then its /v1/models."""
    row: dict[str, Any] = {"name": node.name, "url": node.url, "kind": node.kind, "node_id": None, "key_id": None}
    row["models"] = None
    row["problem"] = None
    row["pinned"] = None  # True: signs with the pinned key; False: not pinned yet; None: not checked
    try:
        if node.kind == "pinaivu":
            identity = client.get(f"{node.v1}/node")
            identity.raise_for_status()
            body = identity.json()
            row["node_id"] = body.get("node_id")
            row["key_id"] = (body.get("current_key") or {}).get("key_id")
            if pins is not None:
                row["pinned"], row["problem"] = _against_pin(node.name, body, pins.get(node.name))
                if row["problem"]:
                    return row
        headers = {"authorization": f"Bearer {node.api_key}"} if node.api_key else {}
        listed = client.get(f"{node.v1}/models", headers=headers)
        if listed.status_code in (401, 403):
            row["problem"] = f"refuses the key this gateway presents (HTTP {listed.status_code} from /v1/models)"
            return row
        listed.raise_for_status()
        row["models"] = [m["id"] for m in listed.json()["data"]]
    except httpx.HTTPStatusError as exc:
        row["problem"] = f"HTTP {exc.response.status_code} from {exc.request.url.path}"
    except httpx.TimeoutException:
        row["problem"] = "timed out"
    except httpx.TransportError as exc:
        row["problem"] = f"unreachable ({exc.__class__.__name__}: {exc})"
    except (ValueError, KeyError, TypeError, AttributeError):
        row["problem"] = "answered, but not as a pinaivu-local or OpenAI-compatible server does"
    return row


def _against_pin(name: str, document: Any, pin: NodePin | None) -> tuple[bool, str | None]:
    """(pinned, problem) of a node's /v1/node against the key the gateway pinned for it."""
    try:
        keys = node_keys(document)
    except MalformedReceipt as exc:
        return False, f"its /v1/node is not a node's identity ({exc})"
    if pin is None:
        return False, None  # the gateway pins it on first contact
    if keys.continues(pin):
        return True, None
    return True, (
        f"signs with key {keys.current.key_id} of node {keys.node_id}, not the key {pin.key_id} of node "
        f"{pin.node_id} the gateway pinned, nor a published rotation of it: the gateway refuses its receipts; "
        f"if the change is yours, accept it with `pinaivu-local nodes trust {name}`"
    )


def masked(url: str) -> str:
    """A service URL with its password, if any, replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


def check_configured(settings: Settings) -> dict[str, dict[str, Any] | None]:
    """Every service the settings name, checked; None for those they do not."""
    database, redis_url = settings.database_url, settings.redis_url
    return {
        "postgres": check_postgres(database.get_secret_value(), settings.db_timeout_s) if database else None,
        "redis": check_redis(redis_url.get_secret_value(), settings.redis_timeout_s) if redis_url else None,
        "nodes": check_nodes(settings.nodes_file, pins=pinned_keys(settings)) if settings.nodes_file else None,
    }


def problems(services: dict[str, dict[str, Any] | None]) -> list[tuple[Literal["error", "warning"], str]]:
    """(level, message) for each service that failed, naming it; pending migrations are a warning."""
    found: list[tuple[Literal["error", "warning"], str]] = []
    postgres, redis_row, nodes = services["postgres"], services["redis"], services["nodes"]
    if postgres and postgres["problem"]:
        found.append(("error", f"postgres {postgres['url'] or 'PINAIVU_DATABASE_URL'}: {postgres['problem']}"))
    elif postgres and postgres["migrations_pending"]:
        pending = len(postgres["migrations_pending"])
        found.append(("warning", f"postgres {postgres['url']}: {pending} migrations pending (serve applies them)"))
    if redis_row and redis_row["problem"]:
        found.append(("error", f"redis {redis_row['url']}: {redis_row['problem']}"))
    if nodes and nodes["problem"]:
        found.append(("error", f"nodes file {nodes['problem']}"))
    for node in nodes["nodes"] if nodes else []:
        if node["problem"]:
            found.append(("error", f"node {node['name']} ({node['url']}): {node['problem']}"))
    return found


def lines(services: dict[str, dict[str, Any] | None]) -> list[str]:
    """One line per configured service (and per node), for doctor's text report."""
    out = []
    postgres, redis_row, nodes = services["postgres"], services["redis"], services["nodes"]
    if postgres:
        state = (
            f"PROBLEM: {postgres['problem']}"
            if postgres["problem"]
            else f"Postgres {postgres['server_version']}, {postgres['migrations_applied']} migrations applied, "
            f"{len(postgres['migrations_pending'])} pending, writable"
        )
        out.append(f"postgres         {postgres['url']} ({state})")
    if redis_row:
        state = (
            f"PROBLEM: {redis_row['problem']}"
            if redis_row["problem"]
            else f"Redis {redis_row['server_version']}, Lua scripts run"
        )
        out.append(f"redis            {redis_row['url']} ({state})")
    if nodes:
        out.append(
            f"nodes file       {nodes['file']}" + (f" (PROBLEM: {nodes['problem']})" if nodes["problem"] else "")
        )
    for node in nodes["nodes"] if nodes else []:
        if node["problem"]:
            state = f"PROBLEM: {node['problem']}"
        else:
            key = f", node {node['node_id']} signing with key {node['key_id']}" if node["key_id"] else ""
            key += {True: " (the pinned key)", False: " (not pinned yet: pinned on first contact)"}.get(
                node["pinned"], ""
            )
            state = f"reachable{key}, models {', '.join(node['models'] or []) or 'none'}"
        out.append(f"node             {node['name']} {node['url']} ({state})")
    return out
