"""The nodes file (`serve --nodes nodes.toml`): which nodes a gateway may route to, and how to reach them."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pinaivu_local.errors import ConfigError

NodeKind = Literal["pinaivu", "openai"]
# The gateway's own engine, when it serves models too: a node like the others, under this name.
LOCAL = "local"


class _Entry(BaseModel):
    """One `[nodes.NAME]` table as written in the file; an unknown field is refused by name."""

    model_config = ConfigDict(extra="forbid")

    url: str
    api_key_env: str | None = None
    kind: NodeKind = "pinaivu"
    # What an OpenAI-compatible server runs at once (it reports no slots): used to compare free capacity.
    slots: int = Field(default=1, ge=1, le=4096)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        parts = urlsplit(value)
        if "@" in parts.netloc:  # it would be sent to the node as its key's stand-in, and shown in logs
            raise ValueError(
                "holds a user name or password (user:pass@); put the node's key in the gateway's environment "
                "and name that variable with api_key_env"
            )
        if parts.query or parts.fragment:
            raise ValueError("has a query or fragment; give the node's base URL only")
        return value.rstrip("/")


@dataclass(frozen=True)
class NodeSpec:
    """One node: where it is, what kind of server, the key this gateway presents to it."""

    name: str
    url: str
    kind: NodeKind = "pinaivu"
    api_key: str | None = None
    slots: int = 1

    @property
    def v1(self) -> str:
        """Its OpenAI base URL."""
        return f"{self.url}/v1"

    def redacted(self, text: str) -> str:
        """`text` (a node's own words, an error) without the key this gateway presents to it."""
        return text.replace(self.api_key, "[the node key]") if self.api_key else text


def load_nodes(path: Path) -> list[NodeSpec]:
    """The nodes of a nodes file; ConfigError naming the file, the node and the field on any mistake."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the nodes file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    unknown = sorted(set(data) - {"nodes"})
    if unknown:
        raise ConfigError(f"{path}: unknown table {unknown[0]!r}; nodes are [nodes.NAME] tables")
    tables = data.get("nodes") or {}
    if not tables:
        raise ConfigError(f"{path}: no [nodes.NAME] table; name at least one node")
    return [_node(path, name, table) for name, table in tables.items()]


def _node(path: Path, name: str, table: object) -> NodeSpec:
    if name == LOCAL:
        raise ConfigError(f"{path}: the name {LOCAL!r} is the gateway's own engine; call this node otherwise")
    try:
        entry = _Entry.model_validate(table)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "table"
        raise ConfigError(f"{path}: nodes.{name}.{field}: {first['msg']}") from None
    key = None
    if entry.api_key_env:
        key = os.environ.get(entry.api_key_env)
        if not key:
            raise ConfigError(f"{path}: nodes.{name}: the environment variable {entry.api_key_env} is not set")
    return NodeSpec(name=name, url=entry.url, kind=entry.kind, api_key=key, slots=entry.slots)
