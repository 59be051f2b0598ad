"""The systemd unit `pinaivu-local service` installs: this command, its data dir, an environment file, hardening."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from pinaivu_local.children import is_frozen

UNIT_NAME = "pinaivu-local.service"
# serve's own grace for running streams (cli/serve.py's GRACEFUL_SHUTDOWN_S), plus the models' release.
STOP_TIMEOUT_S = 30
# Where a home directory may be: ProtectHome hides these, or makes them read-only.
_HOMES = (Path("/home"), Path("/root"), Path("/run/user"))
# PrivateTmp gives the service fresh, empty ones of these.
_TMPS = (Path("/tmp"), Path("/var/tmp"))


@dataclass(frozen=True)
class UnitPlan:
    """What the unit says: the command, where it keeps its data, whose service it is."""

    command: list[str]  # the executable and its arguments before `serve`
    data_dir: Path
    models_file: Path
    env_file: Path
    user_unit: bool  # a --user unit of the user's own service manager
    run_as: str | None  # User= of a system unit


def serve_command() -> list[str]:
    """How this pinaivu-local is started: the single file, the installed script, else `python -m pinaivu_local`."""
    if is_frozen():
        return [str(Path(sys.executable).absolute())]
    # Not resolved: a virtualenv's python is a link to the system's, and only the link finds the venv.
    script = Path(sys.executable).absolute().parent / "pinaivu-local"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [str(Path(sys.executable).absolute()), "-m", "pinaivu_local"]


def default_unit_dir(user_unit: bool) -> Path:
    """/etc/systemd/system, or the user's $XDG_CONFIG_HOME/systemd/user (~/.config/systemd/user)."""
    if not user_unit:
        return Path("/etc/systemd/system")
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user"


def default_env_file(user_unit: bool) -> Path:
    """/etc/pinaivu-local/env, or the user's $XDG_CONFIG_HOME/pinaivu-local/env."""
    if not user_unit:
        return Path("/etc/pinaivu-local/env")
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "pinaivu-local" / "env"


def render(plan: UnitPlan) -> str:
    """The unit file's text."""
    # ExecStart expands $VARIABLES: a literal $ is $$ there (and only there).
    exec_start = " ".join(_quoted(part.replace("$", "$$")) for part in [*plan.command, "serve"])
    unit = [
        "[Unit]",
        "Description=pinaivu-local: the Pinaivu OpenAI-compatible API on this machine",
        "Documentation=https://api.pinaivu.com",
    ]
    if not plan.user_unit:  # a user's manager cannot order itself after the system's network
        unit += ["Wants=network-online.target", "After=network-online.target"]
    service = [
        "",
        "[Service]",
        "Type=exec",
        f"ExecStart={exec_start}",
        f"Environment={_quoted('PINAIVU_DATA_DIR=' + str(plan.data_dir))}",
        f"Environment={_quoted('PINAIVU_MODELS_FILE=' + str(plan.models_file))}",
        # Its settings (PINAIVU_HOST, PINAIVU_PORT, PINAIVU_API_KEY, ...) override the two above; "-": optional.
        f"EnvironmentFile=-{_escaped(str(plan.env_file))}",  # one path, not a list: never quoted
        f"WorkingDirectory={_escaped(str(plan.data_dir))}",
        "Restart=on-failure",
        "RestartSec=5",
        f"TimeoutStopSec={STOP_TIMEOUT_S}",
        "UMask=0077",
        "NoNewPrivileges=yes",
        # These filter system calls (seccomp), which an unprivileged user's manager may do too.
        "LockPersonality=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "SystemCallArchitectures=native",
    ]
    if not plan.user_unit:
        service += [f"User={plan.run_as}", *_system_hardening(plan)]
    install = ["", "[Install]", f"WantedBy={'default.target' if plan.user_unit else 'multi-user.target'}", ""]
    return "\n".join(unit + service + install)


def _system_hardening(plan: UnitPlan) -> list[str]:
    """What only a system unit gets: these need a mount namespace, which a user's manager may not set up.

    No PrivateDevices (a GPU is a device: /dev/nvidia*, /dev/dri) nor MemoryDenyWriteExecute (ctypes'
    callbacks, llama.cpp's log hook, are libffi closures, which may need writable code).
    """
    needed = [plan.data_dir, plan.models_file, Path(plan.command[0])]
    in_home = any(_under(path, _HOMES) for path in needed)
    private_tmp = [] if any(_under(path, _TMPS) for path in needed) else ["PrivateTmp=yes"]
    return [
        "ProtectSystem=strict",
        f"ReadWritePaths={_quoted(str(plan.data_dir))}",
        # Hidden, unless the data, the catalog or the command lives in a home: then read-only, the data writable.
        f"ProtectHome={'read-only' if in_home else 'yes'}",
        *private_tmp,  # not where the data, the catalog or the command lives in /tmp: the service would not see it
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "RestrictNamespaces=yes",
        # AF_UNIX: a Postgres server's socket; AF_NETLINK: the host's addresses, for getaddrinfo.
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK",
        # No capability at all: a port below 1024 needs AmbientCapabilities=CAP_NET_BIND_SERVICE added.
        "CapabilityBoundingSet=",
    ]


def _under(path: Path, folders: tuple[Path, ...]) -> bool:
    absolute = path.absolute()
    return any(absolute == folder or folder in absolute.parents for folder in folders)


def _escaped(value: str) -> str:
    """A value with its % escaped: systemd reads %x as a specifier."""
    return value.replace("%", "%%")


def _quoted(value: str) -> str:
    """One word of a list or a command line: escaped, and quoted when it has a space or a quote."""
    value = _escaped(value)
    if any(c in value for c in " \t\"\\'"):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value
