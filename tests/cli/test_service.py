"""`pinaivu-local service`: the unit as systemd-analyze reads it, and install/uninstall against a fake systemctl."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pinaivu_local.cli import main
from pinaivu_local.cli.systemd_unit import UNIT_NAME, UnitPlan, render, serve_command

# CI installs Debian's systemd through `make test` and sets this: a missing systemd-analyze fails there.
REQUIRED = os.environ.get("PINAIVU_REQUIRE_SYSTEMD") == "1"


def verify(tmp_path: Path, text: str, *, user_unit: bool = False) -> None:
    """systemd-analyze verify says nothing of the unit: every key known, every value parsed, the command there."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        message = "systemd-analyze is not installed (apt-get install systemd, or `make test` as root)"
        pytest.fail(message) if REQUIRED else pytest.skip(message)
    folder = tmp_path / "verify"
    folder.mkdir(exist_ok=True)
    unit = folder / UNIT_NAME
    unit.write_text(text)
    runtime = tmp_path / "runtime"  # a --user verification wants a runtime dir, which a test run may not have
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_COLOR": "0"}
    command = [analyze, *(["--user"] if user_unit else []), "verify", str(unit)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == "", result.stderr


def settings(unit: str) -> dict[str, list[str]]:
    """Each key of the unit file, with its values in order."""
    found: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, ["service", *args], env=env)


def test_the_system_unit(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = cli("unit", "--data-dir", str(data), "--run-as", "pinaivu", "--env-file", "/etc/pinaivu-local/env")
    assert result.exit_code == 0, result.output
    unit = settings(result.output)
    assert unit["ExecStart"] == [" ".join([*serve_command(), "serve"])]
    assert serve_command() == [str(Path(sys.executable).absolute().parent / "pinaivu-local")]  # the installed script
    assert f"PINAIVU_DATA_DIR={data}" in unit["Environment"]
    assert unit["EnvironmentFile"] == ["-/etc/pinaivu-local/env"]
    assert unit["Restart"] == ["on-failure"] and unit["User"] == ["pinaivu"]
    assert unit["NoNewPrivileges"] == ["yes"] and unit["ProtectSystem"] == ["strict"]
    assert unit["ReadWritePaths"] == [str(data)]
    assert unit["WantedBy"] == ["multi-user.target"]
    assert "PrivateTmp" not in unit  # the data dir is in /tmp here: a private /tmp would hide it
    verify(tmp_path, result.output)


def test_hardening_follows_where_things_live(tmp_path: Path) -> None:
    """ProtectHome hides homes unless the data, catalog or command is in one; PrivateTmp unless one is in /tmp."""
    command = serve_command()
    elsewhere = UnitPlan(
        command, Path("/srv/pinaivu"), Path("/srv/pinaivu/models.toml"), Path("/etc/p.env"), False, "u"
    )
    at_home = UnitPlan(command, Path("/home/u/.local/share/p"), Path("/srv/m.toml"), Path("/etc/p.env"), False, "u")
    odd = UnitPlan(command, Path("/srv/50% of it/data dir"), Path("/srv/m.toml"), Path("/etc/p.env"), False, "u")
    if not str(Path(command[0])).startswith(("/home/", "/root/", "/tmp/")):
        assert settings(render(elsewhere))["ProtectHome"] == ["yes"]
        assert settings(render(elsewhere))["PrivateTmp"] == ["yes"]
    assert settings(render(at_home))["ProtectHome"] == ["read-only"]
    assert settings(render(odd))["ReadWritePaths"] == ['"/srv/50%% of it/data dir"']
    assert settings(render(odd))["WorkingDirectory"] == ["/srv/50%% of it/data dir"]
    for plan in (elsewhere, at_home, odd):
        verify(tmp_path, render(plan))


def test_the_user_unit(tmp_path: Path) -> None:
    result = cli("unit", "--user", "--data-dir", str(tmp_path / "data"), env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert result.exit_code == 0, result.output
    unit = settings(result.output)
    assert unit["EnvironmentFile"] == [f"-{tmp_path}/pinaivu-local/env"]
    assert unit["WantedBy"] == ["default.target"] and unit["NoNewPrivileges"] == ["yes"]
    assert "User" not in unit and "ProtectSystem" not in unit  # a user's manager may not have namespaces
    verify(tmp_path, result.output, user_unit=True)
    refused = cli("unit", "--user", "--run-as", "nobody")
    assert refused.exit_code == 1 and "--run-as is for a system unit" in refused.output


@pytest.fixture
def fake_systemctl(tmp_path: Path) -> Path:
    """A `systemctl` first on PATH that records its arguments, one call a line, and succeeds."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "systemctl.log"
    script = bin_dir / "systemctl"
    script.write_text(
        f'#!/bin/sh\necho "$*" >> {log}\nif [ -n "$FAIL_SYSTEMCTL" ]; then echo "$FAIL_SYSTEMCTL" >&2; exit 1; fi\n'
    )
    script.chmod(0o755)
    return log


def path_with(fake: Path) -> str:
    return f"{fake.parent / 'bin'}:{os.environ['PATH']}"


@pytest.mark.parametrize("user_unit", [False, True], ids=["system", "user"])
def test_install_then_uninstall(tmp_path: Path, fake_systemctl: Path, user_unit: bool) -> None:
    scope = ["--user"] if user_unit else []
    units, data = tmp_path / "units", tmp_path / "fresh" / "data"
    env = {"PATH": path_with(fake_systemctl), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    where = ["--unit-dir", str(units), "--data-dir", str(data)]
    installed = cli("install", *scope, *where, env=env)
    assert installed.exit_code == 0, installed.output
    unit = units / UNIT_NAME
    assert unit.read_text() == cli("unit", *scope, "--data-dir", str(data), env=env).output
    assert data.is_dir()  # ReadWritePaths names it: it must exist before the unit starts
    assert f"wrote {unit}" in installed.output
    prefix = "--user " if user_unit else ""
    assert fake_systemctl.read_text().splitlines() == [f"{prefix}daemon-reload", f"{prefix}enable --now {UNIT_NAME}"]
    fake_systemctl.unlink()
    removed = cli("uninstall", *scope, "--unit-dir", str(units), env=env)
    assert removed.exit_code == 0, removed.output
    assert not unit.exists() and data.is_dir()
    assert fake_systemctl.read_text().splitlines() == [f"{prefix}disable --now {UNIT_NAME}", f"{prefix}daemon-reload"]
    again = cli("uninstall", *scope, "--unit-dir", str(units), env=env)
    assert again.exit_code == 1 and f"{unit}: no unit installed there" in again.output


def test_systemctl_failing_or_absent(tmp_path: Path, fake_systemctl: Path) -> None:
    units = tmp_path / "units"
    where = ["--unit-dir", str(units), "--data-dir", str(tmp_path / "data")]
    failing = {"PATH": path_with(fake_systemctl), "FAIL_SYSTEMCTL": "Failed to connect to bus: No such file"}
    result = cli("install", *where, env=failing)
    assert result.exit_code == 1
    assert (
        result.output.strip().splitlines()[-1]
        == "Error: `systemctl daemon-reload` failed: Failed to connect to bus: No such file"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    other = tmp_path / "other"
    absent = cli(
        "install", "--user", "--unit-dir", str(other), "--data-dir", str(tmp_path / "d2"), env={"PATH": str(empty)}
    )
    assert absent.exit_code == 1
    assert "systemctl --user is not on PATH: this machine runs no systemd; nothing was changed" in absent.output
    assert not other.exists() and not (tmp_path / "d2").exists()
