"""The `pinaivu-local` command: a click group with subcommands; each builds its settings once."""

from __future__ import annotations

import click

from pinaivu_local import __version__
from pinaivu_local.cli.bench import bench
from pinaivu_local.cli.doctor import doctor
from pinaivu_local.cli.keys import keys
from pinaivu_local.cli.models import models
from pinaivu_local.cli.serve import serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pinaivu-local")
def main() -> None:
    """pinaivu-local: the Pinaivu OpenAI-compatible API, served from this machine."""


main.add_command(serve)
main.add_command(models)
main.add_command(doctor)
main.add_command(keys)
main.add_command(bench)
