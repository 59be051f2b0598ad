"""What every subcommand shares: settings, the catalog, the key store, logging, common options, one-line errors."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from pinaivu_local.catalog import Catalog, ModelSpec, load_catalog
from pinaivu_local.errors import ConfigError, KeyNotActive, KeyNotFound, PinaivuError, StorageUnavailable
from pinaivu_local.keys.store import KeyStore
from pinaivu_local.settings import Settings
from pinaivu_local.sizes import human_bytes

F = TypeVar("F", bound=Callable[..., Any])


data_dir_option = click.option(
    "--data-dir", type=click.Path(path_type=Path, file_okay=False), help="Data directory [PINAIVU_DATA_DIR]."
)


def catalog_options(command: F) -> F:
    """--models-file and --data-dir, which every command that reads the catalog takes."""
    return click.option("--models-file", type=click.Path(path_type=Path), help="Model catalog [PINAIVU_MODELS_FILE].")(
        data_dir_option(command)
    )


def build_settings(**overrides: Any) -> Settings:
    """Settings from the environment (and .env), CLI options winning; one-line errors."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "settings"
        env = name if name.isupper() else f"PINAIVU_{name.upper()}"  # HF_TOKEN etc. keep their own names
        raise click.ClickException(f"invalid setting {name} ({env}): {first['msg']}") from None


def load_llama_cpp() -> list[str]:
    """Load llama.cpp (its build's description), or one line naming LLAMA_CPP_LIB_PATH and what is wrong."""
    try:
        from pinaivu_local.engine.host.build_info import llama_build

        return llama_build().describe()
    except (OSError, RuntimeError, AttributeError) as exc:  # no library, a broken one, one missing a symbol
        override = os.environ.get("LLAMA_CPP_LIB_PATH")
        if not override:
            raise click.ClickException(f"llama.cpp cannot be loaded: {exc}") from None
        raise click.ClickException(
            f"llama.cpp cannot be loaded from LLAMA_CPP_LIB_PATH={override}: {_lib_path_problem(Path(override), exc)}"
        ) from None


def _lib_path_problem(folder: Path, exc: Exception) -> str:
    """What is wrong with the folder LLAMA_CPP_LIB_PATH names, in words a user can act on."""
    if not folder.exists():
        return "no such folder (set it to the folder that holds libllama, or unset it)"
    if not folder.is_dir():
        return "not a folder (set it to the folder that holds libllama, not the file)"
    if isinstance(exc, FileNotFoundError):
        names = "libllama.so, libllama.dylib or llama.dll"
        return f"no libllama in it (looked for {names})"
    return str(exc)


def open_catalog(settings: Settings) -> Catalog:
    """The catalog named by the settings, or a one-line error."""
    try:
        return load_catalog(settings.models_file, settings.models_dir)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None


def pull_models(settings: Settings, specs: Iterable[ModelSpec], *, from_ollama: bool = False) -> list[str]:
    """Pull each model with a progress bar, one line per result; return the error lines."""
    from pinaivu_local.weights.progress import BarProgress
    from pinaivu_local.weights.pull import Puller

    failures = []
    with Puller(settings, BarProgress()) as puller:
        for spec in specs:
            try:
                result = puller.pull(spec, from_ollama=from_ollama)
            except PinaivuError as exc:
                failures.append(exc.message)
                click.echo(f"Error: {exc.message}", err=True)
                continue
            size = human_bytes(result.size_bytes)
            click.echo(f"{spec.id}: {result.action} {result.file} ({size}, sha256 {result.sha256})")
    return failures


@contextlib.contextmanager
def key_store(settings: Settings) -> Iterator[KeyStore]:
    """The key store of the data dir (or of PINAIVU_DATABASE_URL), closed afterwards; one-line errors."""
    from pinaivu_local.storage.database import Database

    try:
        database = Database(settings.database_target, timeout_s=settings.db_timeout_s)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None
    try:
        yield KeyStore(database)
    except (ConfigError, KeyNotFound, KeyNotActive) as exc:
        raise click.ClickException(exc.message) from None
    except StorageUnavailable as exc:  # its message names no file (it is written for HTTP clients)
        raise click.ClickException(f"{database.where}: {exc.reason}") from None
    finally:
        database.close()


def configure_logging(level: str, log_format: str) -> None:
    """Log lines to stderr at `level`; access lines as text or one JSON object each."""
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
    logging.getLogger("httpx").setLevel(logging.WARNING)
