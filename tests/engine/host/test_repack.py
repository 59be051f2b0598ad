"""Weight repacking: decided without crashing, by CPU flags or a child-process probe."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from pinaivu_local.engine.host.repack import CACHE_FILE, PROBE_TIMEOUT_S, cpu_identity, decide_repack

SEGFAULT = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]
SUCCEED = [sys.executable, "-c", "pass"]


def test_explicit_settings_win(tmp_path: Path) -> None:
    assert decide_repack("on", tmp_path, probe_cmd=SEGFAULT) is True
    assert decide_repack("off", tmp_path, probe_cmd=SUCCEED) is False
    assert not (tmp_path / CACHE_FILE).exists()


def test_amx_cpu_never_repacks(tmp_path: Path) -> None:
    cpu = ("Intel Xeon Platinum", {"avx512f", "amx_tile", "amx_int8"})
    assert decide_repack("auto", tmp_path, probe_cmd=SUCCEED, cpu=cpu) is False


def test_a_crashing_probe_turns_repacking_off(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert decide_repack("auto", tmp_path, probe_cmd=SEGFAULT, cpu=("cpu", {"avx2"})) is False
    assert "signal 11" in caplog.text
    cached = json.loads((tmp_path / CACHE_FILE).read_text())
    assert cached["safe"] is False


def test_verdict_is_cached_per_cpu(tmp_path: Path) -> None:
    assert decide_repack("auto", tmp_path, probe_cmd=SUCCEED, cpu=("cpu", {"avx2"})) is True
    # cached: the crashing probe is not run again for the same CPU
    assert decide_repack("auto", tmp_path, probe_cmd=SEGFAULT, cpu=("cpu", {"avx2"})) is True
    # another CPU is probed anew
    assert decide_repack("auto", tmp_path, probe_cmd=SEGFAULT, cpu=("other", {"avx2"})) is False


def test_real_probe_on_this_machine(tmp_path: Path) -> None:
    """The real child process: a Q4_K_M and a Q8_0 model decoded with repacking on."""
    _name, flags = cpu_identity()
    verdict = decide_repack("auto", tmp_path)
    cached = json.loads((tmp_path / CACHE_FILE).read_text()) if (tmp_path / CACHE_FILE).exists() else None
    if any(f.startswith("amx") for f in flags):
        assert verdict is False
    else:
        assert cached is not None and cached["safe"] is verdict
        assert cached["detail"] == "ok" if verdict else cached["detail"].startswith(("signal", "exit", "probe"))


def test_the_probe_gets_past_its_own_quantizing(tmp_path: Path) -> None:
    """Only repacked decoding may crash the probe: a crash before it would turn repacking off for nothing."""
    cmd = [sys.executable, "-m", "pinaivu_local.engine.host.repack_probe", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False)
    assert (tmp_path / "probe-q4_k_m.gguf").exists(), (done.returncode, done.stderr[-2000:])
