"""OpenMP's spinning is shortened for the server, unless the user chose otherwise or it is too late."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pinaivu_local.engine.host.openmp import SPIN_COUNT, limit_spinning

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("users", [{"GOMP_SPINCOUNT": "5"}, {"OMP_WAIT_POLICY": "ACTIVE"}])
def test_the_users_setting_is_kept(users: dict[str, str]) -> None:
    environ = dict(users)
    assert limit_spinning(environ)
    assert environ == users


def test_too_late_once_llama_cpp_is_loaded() -> None:
    """This test process has loaded llama.cpp (other tests did, or this import does): libgomp has read
    its settings, so nothing is changed and the caller is told."""
    import llama_cpp  # noqa: F401

    environ: dict[str, str] = {}
    assert not limit_spinning(environ)
    assert environ == {}


def test_serve_sets_it_before_llama_cpp_loads() -> None:
    """The order `serve` relies on: its module imports no llama.cpp, so the call comes first."""
    code = (
        "import os, sys\n"
        "import pinaivu_local.cli, pinaivu_local.cli.serve\n"
        "assert 'llama_cpp' not in sys.modules\n"
        "from pinaivu_local.engine.host.openmp import limit_spinning\n"
        "assert limit_spinning()\n"
        "import llama_cpp\n"
        "print(os.environ['GOMP_SPINCOUNT'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(SPIN_COUNT)
