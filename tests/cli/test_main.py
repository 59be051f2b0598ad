"""The `pinaivu-local` group: every command answers --help, and each takes the one --data-dir option."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pinaivu_local.cli import main

LEAVES = [
    ["serve"],
    ["models", "list"],
    ["models", "pull"],
    ["models", "rm"],
    ["doctor"],
    ["keys", "create"],
    ["keys", "list"],
    ["keys", "revoke"],
    ["keys", "rotate"],
    ["bench"],
]


@pytest.mark.parametrize("args", [[], ["models"], ["keys"], *LEAVES])
def test_help_everywhere(args: list[str]) -> None:
    result = CliRunner().invoke(main, [*args, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


@pytest.mark.parametrize("args", LEAVES)
def test_one_data_dir_option_everywhere(args: list[str]) -> None:
    help_text = " ".join(CliRunner().invoke(main, [*args, "--help"]).output.split())
    assert "--data-dir DIRECTORY Data directory [PINAIVU_DATA_DIR]." in help_text


def test_version_names_llama_cpp(monkeypatch: pytest.MonkeyPatch) -> None:
    import llama_cpp

    from pinaivu_local import __version__

    monkeypatch.delenv("LLAMA_CPP_LIB_PATH", raising=False)
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0, result.output
    name, build, libllama, libggml = result.output.splitlines()
    assert name == f"pinaivu-local {__version__}"
    assert build.startswith("llama.cpp ") and f"llama-cpp-python {llama_cpp.__version__}" in build
    assert " backend " in build and "(ggml backends: CPU" in build
    assert libllama == f"libllama {Path(llama_cpp.llama_cpp._lib._name).resolve()} (llama-cpp-python)"
    assert libggml.startswith("libggml  ") and "libggml" in libggml[9:]
