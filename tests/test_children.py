"""Our own child processes: `python -m` when installed, the binary itself with --run-module when frozen."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pinaivu_local.children import RUN_MODULE, module_command


def test_installed_children_are_python_dash_m() -> None:
    assert module_command("pinaivu_local.engine.host.repack_probe") == [
        sys.executable,
        "-m",
        "pinaivu_local.engine.host.repack_probe",
    ]
    with pytest.raises(ValueError, match="not a child module"):
        module_command("os")


def test_frozen_children_are_the_binary_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", "/opt/pinaivu-local")
    assert module_command("pinaivu_local") == ["/opt/pinaivu-local"]
    assert module_command("pinaivu_local.engine.host.repack_probe") == [
        "/opt/pinaivu-local",
        RUN_MODULE,
        "pinaivu_local.engine.host.repack_probe",
    ]


def test_the_entry_point_runs_a_child_module(tmp_path: Path) -> None:
    """What the binary does with --run-module, through `python -m pinaivu_local` (the same entry point)."""
    probe = [sys.executable, "-m", "pinaivu_local", RUN_MODULE, "pinaivu_local.engine.host.repack_probe", str(tmp_path)]
    done = subprocess.run(probe, capture_output=True, text=True, timeout=120)
    # The probe ran either way: it wrote its model, then decoded with repacked weights, which crashes on CPUs
    # with AMX (that crash is the answer it exists to give; engine/host/repack.py) and succeeds elsewhere.
    assert done.returncode in (0, -signal.SIGSEGV), done.stderr
    assert (tmp_path / "probe-q4_k_m.gguf").is_file()

    refused = subprocess.run(
        [sys.executable, "-m", "pinaivu_local", RUN_MODULE, "http.server"], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 1
    assert "http.server is not a child module of pinaivu-local" in refused.stderr
