"""`pinaivu-local service unit|install|uninstall`: this server as a systemd service on an edge box."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from pinaivu_local.cli.common import build_settings, catalog_options
from pinaivu_local.cli.systemd_unit import (
    UNIT_NAME,
    UnitPlan,
    default_env_file,
    default_unit_dir,
    render,
    serve_command,
)

F = TypeVar("F", bound=Callable[..., Any])


def _scope_options(command: F) -> F:
    """--user and --unit-dir, which every service command takes."""
    command = click.option(
        "--unit-dir",
        type=click.Path(path_type=Path, file_okay=False),
        help="Where the unit file goes [default /etc/systemd/system, with --user ~/.config/systemd/user].",
    )(command)
    return click.option("--user", "user_unit", is_flag=True, help="A unit of your own user's service manager.")(command)


def _unit_options(command: F) -> F:
    """What the unit says beyond the settings: its environment file and, for a system unit, its user."""
    command = click.option(
        "--env-file",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Its optional environment file [default /etc/pinaivu-local/env, with --user ~/.config/pinaivu-local/env].",
    )(command)
    command = click.option("--run-as", help="The user a system unit runs as [default: you].")(command)
    return catalog_options(_scope_options(command))


@click.group()
def service() -> None:
    """Run this server as a systemd service: print, install or remove its unit."""


@service.command()
@_unit_options
def unit(user_unit: bool, unit_dir: Path | None, env_file: Path | None, run_as: str | None, **options: Any) -> None:
    """Print the systemd unit that `service install` would write."""
    click.echo(render(_plan(user_unit, env_file, run_as, options)), nl=False)


@service.command()
@_unit_options
def install(user_unit: bool, unit_dir: Path | None, env_file: Path | None, run_as: str | None, **options: Any) -> None:
    """Write the unit, then `systemctl daemon-reload` and `enable --now` it."""
    plan = _plan(user_unit, env_file, run_as, options)
    path = (unit_dir or default_unit_dir(user_unit)) / UNIT_NAME
    _need_systemctl(user_unit)  # before anything is written
    _prepare_data_dir(plan)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(plan))
        path.chmod(0o644)
    except OSError as exc:
        hint = "; run it as root (sudo), or install a --user unit" if not user_unit else ""
        raise click.ClickException(f"{path}: cannot write the unit ({exc.strerror}){hint}") from None
    click.echo(f"wrote {path}")
    _systemctl(user_unit, "daemon-reload")
    _systemctl(user_unit, "enable", "--now", UNIT_NAME)
    where = "journalctl --user" if user_unit else "journalctl"
    click.echo(f"enabled and started {UNIT_NAME}; its settings go in {plan.env_file}; its log: {where} -u {UNIT_NAME}")


@service.command()
@_scope_options
def uninstall(user_unit: bool, unit_dir: Path | None) -> None:
    """Stop and disable the unit, remove its file, `systemctl daemon-reload`."""
    path = (unit_dir or default_unit_dir(user_unit)) / UNIT_NAME
    if not path.is_file():
        raise click.ClickException(f"{path}: no unit installed there")
    _systemctl(user_unit, "disable", "--now", UNIT_NAME)
    try:
        path.unlink()
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot remove the unit ({exc.strerror})") from None
    _systemctl(user_unit, "daemon-reload")
    click.echo(f"stopped, disabled and removed {path}; the data dir is kept")


def _plan(user_unit: bool, env_file: Path | None, run_as: str | None, options: dict[str, Any]) -> UnitPlan:
    if user_unit and run_as:
        raise click.ClickException("--run-as is for a system unit; a --user unit runs as you")
    settings = build_settings(**options)
    return UnitPlan(
        command=serve_command(),
        data_dir=settings.data_dir.absolute(),
        models_file=settings.models_file.absolute(),
        env_file=(env_file or default_env_file(user_unit)).absolute(),
        user_unit=user_unit,
        run_as=None if user_unit else run_as or _me(),
    )


def _prepare_data_dir(plan: UnitPlan) -> None:
    """The data dir must exist before the unit starts: ReadWritePaths names it (and a missing one fails)."""
    try:
        created = not plan.data_dir.exists()
        plan.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if created and plan.run_as and plan.run_as != _me() and os.geteuid() == 0:
            shutil.chown(plan.data_dir, plan.run_as)
    except (OSError, LookupError) as exc:
        raise click.ClickException(f"{plan.data_dir}: cannot prepare the data directory ({exc})") from None


def _me() -> str:
    """The user this process runs as (its effective uid, not $USER)."""
    import pwd  # POSIX only, as systemd is

    return pwd.getpwuid(os.geteuid()).pw_name


def _need_systemctl(user_unit: bool) -> None:
    if shutil.which("systemctl") is None:
        what = "systemctl --user" if user_unit else "systemctl"
        raise click.ClickException(f"{what} is not on PATH: this machine runs no systemd; nothing was changed")


def _systemctl(user_unit: bool, *args: str) -> None:
    """Run systemctl (--user); one line naming the command when it fails."""
    _need_systemctl(user_unit)
    command = ["systemctl", *(["--user"] if user_unit else []), *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        reason = (result.stderr or result.stdout).strip().splitlines()
        raise click.ClickException(f"`{' '.join(command)}` failed: {reason[-1] if reason else result.returncode}")
