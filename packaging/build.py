"""Build the one-file binary: dist/pinaivu-local-<version>-<os>-<arch>-<cpu|cuda|metal> (what `make dist` runs).

    python packaging/build.py [--backend cpu|cuda|metal] [--dist-dir DIR] [--work-dir DIR]

PyInstaller freezes this environment: its Python, the installed pinaivu_local and the llama.cpp that
llama-cpp-python was compiled with, whose backend must be the one asked for (`make dist GPU=...`
compiles it first). Prints the file's path last.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "packaging" / "pinaivu-local.spec"
sys.path.insert(0, str(ROOT))  # this checkout's pinaivu_local, whatever is installed


def binary_name(version: str, backend: str) -> str:
    """pinaivu-local-0.1.0-linux-x86_64-cpu: the version, where it runs and what llama.cpp does there."""
    machine = {"amd64": "x86_64", "aarch64": "arm64"}.get(platform.machine().lower(), platform.machine().lower())
    return f"pinaivu-local-{version}-{platform.system().lower()}-{machine}-{backend}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["cpu", "cuda", "metal"], help="default: llama.cpp's here")
    parser.add_argument("--dist-dir", type=Path, default=ROOT / "dist")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "build" / "pyinstaller")
    args = parser.parse_args(argv)

    from pinaivu_local import __version__
    from pinaivu_local.engine.host.build_info import llama_build

    build = llama_build()
    if args.backend and (args.backend == "cpu") != (build.backend == "cpu"):
        sys.exit(
            f"llama.cpp in this environment is a {build.backend} build ({build.library}), not {args.backend}: "
            f"compile it first (make install GPU={args.backend})"
        )
    name = binary_name(__version__, args.backend or build.backend)
    started = time.monotonic()
    cmd = [
        sys.executable,
        "-m",
        "PyInstaller",
        "--noconfirm",
        "--clean",
        "--log-level",
        "WARN",
        "--distpath",
        str(args.dist_dir),
        "--workpath",
        str(args.work_dir),
        str(SPEC),
        "--",
        "--name",
        name,
    ]
    print(f"building {name} with PyInstaller (a few minutes)...", file=sys.stderr, flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(cmd, cwd=ROOT, env=env, check=False)
    if done.returncode != 0:
        return done.returncode
    binary = args.dist_dir / name
    size = binary.stat().st_size
    print(f"{size / 1e6:.1f} MB in {time.monotonic() - started:.0f} s", file=sys.stderr)
    print(binary)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
