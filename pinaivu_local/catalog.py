"""The model catalog (`models.toml`): which model ids exist and where their weights live."""

from __future__ import annotations

import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pinaivu_local.errors import ConfigError
from pinaivu_local.weights.sources import parse_source

# What a model serves: chat and text completions (and embeddings, mean-pooled), embeddings only, or
# rerank scores only (a classification head: llama.cpp's rank pooling).
ModelKind = Literal["chat", "embedding", "rerank"]
# How an embedding pools a sequence's token vectors (llama.cpp's pooling types); None: the GGUF's own.
Pooling = Literal["none", "mean", "cls", "last", "rank"]


class _Entry(BaseModel):
    """One `[models."id"]` table as written in the file."""

    model_config = ConfigDict(extra="forbid")

    source: str | None = None
    path: str | None = None
    n_ctx: int = Field(default=8192, ge=16)
    n_gpu_layers: int = Field(default=-1, ge=-1)
    parallel: int = Field(default=4, ge=1, le=256)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    kind: ModelKind = "chat"
    pooling: Pooling | None = None
    matryoshka: bool = False


@dataclass(frozen=True)
class ModelSpec:
    """A catalog entry with its weights file resolved to an absolute path."""

    id: str
    source: str | None
    file: Path
    n_ctx: int
    n_gpu_layers: int
    parallel: int
    sha256: str | None = None
    test_model: bool = False
    kind: ModelKind = "chat"
    pooling: Pooling | None = None  # None: the GGUF's (mean for a chat model)
    matryoshka: bool = False  # trained so its vectors may be cut to fewer dimensions (`dimensions`)

    def capabilities(self) -> list[str]:
        """The endpoints it serves, as /v1/models lists them."""
        if self.kind == "chat":
            return ["chat", "completions", "embeddings"]
        return ["embeddings"] if self.kind == "embedding" else ["rerank"]

    def fetch_command(self) -> str | None:
        """The command that puts the weights where the server looks, when the catalog says where from."""
        return f"pinaivu-local models pull {shlex.quote(self.id)}" if self.source else None


@dataclass(frozen=True)
class Catalog:
    """All models of one catalog file."""

    file: Path
    models: tuple[ModelSpec, ...]

    def ids(self) -> list[str]:
        """Model ids in catalog order."""
        return [m.id for m in self.models]


def load_catalog(file: Path, models_dir: Path) -> Catalog:
    """Parse and check a catalog; raise ConfigError with one line naming the file and problem."""
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file}: model catalog not found; set PINAIVU_MODELS_FILE or --models-file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read the model catalog ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML ({exc})") from None
    tables = raw.get("models")
    unknown = sorted(set(raw) - {"models"})
    if unknown:
        raise ConfigError(f'{file}: unknown top-level key {unknown[0]!r}; models go in [models."id"] tables')
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f'{file}: no models; add at least one [models."id"] table')
    specs = tuple(_spec(file, models_dir, model_id, table) for model_id, table in tables.items())
    return Catalog(file=file, models=specs)


def _spec(file: Path, models_dir: Path, model_id: str, table: Any) -> ModelSpec:
    where = f'{file}: [models."{model_id}"]'
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table, not {type(table).__name__}")
    try:
        entry = _Entry.model_validate(table)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{where} {field}: {first['msg']}") from None
    try:
        source = parse_source(entry.source) if entry.source else None
    except ConfigError as exc:
        raise ConfigError(f"{where} {exc.message}") from None
    if entry.path:
        weights = Path(entry.path).expanduser()
        weights = weights if weights.is_absolute() else file.parent / weights
    elif source is not None:
        weights = models_dir / source.file_name()
    else:
        raise ConfigError(f"{where} needs a `source` or a `path`")
    return ModelSpec(
        id=model_id,
        source=entry.source,
        file=weights.resolve(),
        n_ctx=entry.n_ctx,
        n_gpu_layers=entry.n_gpu_layers,
        parallel=entry.parallel,
        sha256=entry.sha256.lower() if entry.sha256 else None,
        kind=entry.kind,
        pooling=entry.pooling,
        matryoshka=entry.matryoshka,
    )
