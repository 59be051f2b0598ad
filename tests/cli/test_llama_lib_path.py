"""A bad LLAMA_CPP_LIB_PATH under --version, serve and doctor: one line naming the path and what is wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import free_port

COMMANDS = [["--version"], ["doctor"], ["serve", "--test-models", "--port", "0"]]


def run_cli(tmp_path: Path, args: list[str], lib_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PINAIVU_")}
    env.update({"PINAIVU_DATA_DIR": str(tmp_path / "data"), "LLAMA_CPP_LIB_PATH": str(lib_path)})
    args = [str(free_port()) if a == "0" else a for a in args]
    return subprocess.run(
        [sys.executable, "-m", "pinaivu_local", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def problem_cases(tmp_path: Path) -> list[tuple[Path, str]]:
    """Folders LLAMA_CPP_LIB_PATH might wrongly name, with what the line must say of each."""
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "libllama.so").write_bytes(b"not a shared library")
    empty = tmp_path / "empty"
    empty.mkdir()
    return [
        (tmp_path / "nowhere", "no such folder"),
        (broken / "libllama.so", "not a folder"),
        (empty, "no libllama in it"),
        (broken, f"{broken / 'libllama.so'}"),  # the loader's own reason follows the file it could not load
    ]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: a[0])
def test_one_line_naming_the_path(tmp_path: Path, args: list[str]) -> None:
    for lib_path, says in problem_cases(tmp_path):
        result = run_cli(tmp_path, args, lib_path)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"Error: llama.cpp cannot be loaded from LLAMA_CPP_LIB_PATH={lib_path}: ")
        assert says in lines[0]
        if lib_path.name == "broken":
            assert "file too short" in lines[0] or "invalid ELF header" in lines[0]
