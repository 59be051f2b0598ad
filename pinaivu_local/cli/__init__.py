"""The `pinaivu-local` command: a click group with subcommands; each builds its settings once."""

from __future__ import annotations

import click

from pinaivu_local import __version__
from pinaivu_local.cli.bench import bench
from pinaivu_local.cli.common import load_llama_cpp
from pinaivu_local.cli.doctor import doctor
from pinaivu_local.cli.identity import identity
from pinaivu_local.cli.keys import keys
from pinaivu_local.cli.models import models
from pinaivu_local.cli.nodes import nodes
from pinaivu_local.cli.receipts import receipts
from pinaivu_local.cli.serve import serve
from pinaivu_local.cli.service import service


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """--version: ours, then llama.cpp's build, backend and library (loading it is what tells them)."""
    if not value or ctx.resilient_parsing:
        return
    click.echo(f"pinaivu-local {__version__}")
    lines = load_llama_cpp()
    for line in lines:
        click.echo(line)
    ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version, llama.cpp's build, backend and library, and exit.",
)
def main() -> None:
    """pinaivu-local: the Pinaivu OpenAI-compatible API, served from this machine."""


main.add_command(serve)
main.add_command(models)
main.add_command(doctor)
main.add_command(keys)
main.add_command(bench)
main.add_command(identity)
main.add_command(receipts)
main.add_command(service)
main.add_command(nodes)
