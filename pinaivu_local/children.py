"""Command lines for our own child processes, installed (`python -m`) or as the one-file binary.

In the binary that `make dist` builds, `sys.executable` is the binary itself and there is no
`python -m`: a child module is asked for with a hidden first argument instead, which the entry
point (`pinaivu_local.__main__`) hands to `run_child_module` before the CLI sees it.
"""

from __future__ import annotations

import runpy
import sys

RUN_MODULE = "--run-module"
# The modules a child process may run: the CLI itself and the modules started with `-m`.
CHILD_MODULES = frozenset(
    {"pinaivu_local", "pinaivu_local.engine.host.repack_probe", "pinaivu_local.bench.llama_cpp_launcher"}
)


def is_frozen() -> bool:
    """Whether this is the one-file binary (PyInstaller) rather than an installed package."""
    return bool(getattr(sys, "frozen", False))


def module_command(module: str) -> list[str]:
    """The argv that runs `python -m <module>` in a child process, installed or frozen."""
    if module not in CHILD_MODULES:
        raise ValueError(f"{module} is not a child module of pinaivu-local")
    if not is_frozen():
        return [sys.executable, "-m", module]
    return [sys.executable] if module == "pinaivu_local" else [sys.executable, RUN_MODULE, module]


def run_child_module(argv: list[str]) -> bool:
    """Run the module named by `<program> --run-module <module> ARGS...` as `__main__`; False when not asked."""
    if len(argv) < 3 or argv[1] != RUN_MODULE:
        return False
    module = argv[2]
    if module not in CHILD_MODULES:
        sys.exit(f"{RUN_MODULE}: {module} is not a child module of pinaivu-local")
    sys.argv = [module, *argv[3:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return True
