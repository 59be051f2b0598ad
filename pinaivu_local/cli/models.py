"""`pinaivu-local models ...`: list, pull and remove the catalog's model files."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from pinaivu_local.catalog import Catalog, ModelSpec
from pinaivu_local.cli.common import build_settings, catalog_options, open_catalog, pull_models
from pinaivu_local.errors import PinaivuError
from pinaivu_local.settings import Settings
from pinaivu_local.sizes import human_bytes
from pinaivu_local.suggest import suggest


@click.group()
def models() -> None:
    """List, pull and remove model files."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@catalog_options
def list_models(as_json: bool, **options: Any) -> None:
    """Every catalog model: state (ready, missing, invalid), file, size, quantization, context, GPU layers."""
    settings = build_settings(**options)
    catalog = open_catalog(settings)
    rows = [_row(spec, settings) for spec in catalog.models]
    if as_json:
        click.echo(json.dumps({"catalog": str(catalog.file), "models": rows}, indent=2))
        return
    click.echo(f"catalog: {catalog.file}")
    click.echo(f"{'ID':<16} {'STATE':<8} {'QUANT':<8} {'SIZE':>9}  {'CTX':<6} {'GPU':<4} FILE")
    for row in rows:
        size = human_bytes(row["size_bytes"]) if row["size_bytes"] else "-"
        gpu = "all" if row["n_gpu_layers"] < 0 else str(row["n_gpu_layers"])
        quant = row["quantization"] or "-"
        click.echo(f"{row['id']:<16} {row['state']:<8} {quant:<8} {size:>9}  {row['n_ctx']:<6} {gpu:<4} {row['file']}")
        if row["problem"]:
            click.echo(f"{'':<16} {row['problem']}")
        if row["fetch_command"]:
            click.echo(f"{'':<16} fetch: {row['fetch_command']}")


@models.command("pull")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--all", "pull_all", is_flag=True, help="Pull every catalog model.")
@click.option(
    "--from-ollama",
    is_flag=True,
    help="Link the model from the local Ollama store (tag = the model id) instead of downloading it.",
)
@catalog_options
def pull(ids: tuple[str, ...], pull_all: bool, from_ollama: bool, **options: Any) -> None:
    """Download models into the data directory (resumable, verified), or link them from Ollama."""
    if not ids and not pull_all:
        raise click.UsageError("name a model id (see `pinaivu-local models list`) or pass --all")
    settings = build_settings(**options)
    catalog = open_catalog(settings)
    specs = list(catalog.models) if pull_all else [_find(catalog, model_id) for model_id in ids]
    if pull_models(settings, specs, from_ollama=from_ollama):
        sys.exit(1)


@models.command("rm")
@click.argument("model_id", metavar="ID")
@click.option("--yes", "-y", is_flag=True, help="Do not ask (never asked when input is not a terminal).")
@catalog_options
def remove(model_id: str, yes: bool, **options: Any) -> None:
    """Delete a pulled model file (with its hash record and any partial download)."""
    from pinaivu_local.weights.inventory import remove as remove_files

    settings = build_settings(**options)
    spec = _find(open_catalog(settings), model_id)
    if not yes and sys.stdin.isatty() and spec.file.exists():
        click.confirm(f"Delete {spec.file}?", abort=True)
    try:
        removed = remove_files(spec, settings.models_dir)
    except PinaivuError as exc:
        raise click.ClickException(exc.message) from None
    for path in removed:
        click.echo(f"removed {path}")


def _find(catalog: Catalog, model_id: str) -> ModelSpec:
    for spec in catalog.models:
        if spec.id == model_id:
            return spec
    close = suggest(model_id, catalog.ids())
    hint = f"; did you mean {close}?" if close else f"; the catalog has {', '.join(catalog.ids())}"
    raise click.ClickException(f"no model {model_id!r} in {catalog.file}{hint}")


def _row(spec: ModelSpec, settings: Settings) -> dict[str, Any]:
    from pinaivu_local.weights.inventory import inspect

    found = inspect(spec)
    return {
        "id": spec.id,
        "state": found.state,
        "file": str(spec.file),
        "size_bytes": found.size_bytes,
        "quantization": found.info.quantization if found.info else None,
        "n_ctx": spec.n_ctx,
        "n_gpu_layers": settings.n_gpu_layers if settings.n_gpu_layers is not None else spec.n_gpu_layers,
        "parallel": spec.parallel,
        "source": spec.source,
        "sha256": found.sha256,
        "problem": found.problem,
        "fetch_command": spec.fetch_command() if found.state == "missing" else None,
    }
