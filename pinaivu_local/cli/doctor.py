"""`pinaivu-local doctor`: the checks of doctor_checks.py, as text or JSON, with an exit status."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from pinaivu_local.cli.common import build_settings, catalog_options, load_llama_cpp


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@catalog_options
def doctor(as_json: bool, **options: Any) -> None:
    """Check this machine, this build and the catalog's files; exit 1 when something blocks serving."""
    load_llama_cpp()  # a library that cannot load is one line, before anything imports it
    from pinaivu_local.cli.doctor_checks import diagnose, render_text

    report = diagnose(build_settings(**options))
    click.echo(json.dumps(report.to_json(), indent=2) if as_json else render_text(report))
    if not report.ok:
        sys.exit(1)
